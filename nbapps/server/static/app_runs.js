// Reports of an app from the gallery's pages (issue 14), through the runs API: "Download
// report" on the app page (templates/app.html) and "Report (PDF)" in the app frame
// (templates/app_frame.html). One module for both.
//
// A control is a button with data-run-report:
//   data-runs-url  POST here (the app's runs: /api/apps/<slug>/runs)
//   data-form      selector of the form whose inputs hold the parameter values
//   data-status    id of the element that shows the progress and the links
//   data-offer     the artifacts to link when done ("report.html report.pdf")
//   data-fetch     an artifact to download at once when done (the frame: "report.pdf")
// The XSRF token is the page's hidden _xsrf input (the cookie is httponly); the run is the
// viewer's own, so its state, place in the queue and findings are followed with
// GET /api/runs/<id>, polled every second at first and less often as it goes on.
// Without script the controls stay hidden; the app page's recent runs list works without it.
(function () {
  "use strict";

  var FINISHED = { passed: true, failed: true, error: true, cancelled: true };
  var LABELS = { "report.html": "HTML report", "report.pdf": "PDF report" };
  var GIVE_UP_MS = 60 * 60 * 1000;  // the server stops a run long before (run_timeout)

  // poll interval: 1 s for the first 10 s, 2 s up to a minute, then 5 s
  function interval(elapsedMs) {
    return elapsedMs < 10000 ? 1000 : (elapsedMs < 60000 ? 2000 : 5000);
  }

  function xsrfToken() {
    var input = document.querySelector('input[name="_xsrf"]');
    return input ? input.value : "";
  }

  // the parameter values of a form, as the text its inputs hold (the API reads text for a
  // typed parameter as the URL query would)
  function formValues(form) {
    var values = {};
    if (!form) return values;
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "_xsrf") return;
      if (el.tagName !== "INPUT" && el.tagName !== "SELECT") return;
      if (el.type === "submit" || el.type === "button") return;
      values[el.name] = el.value;
    });
    return values;
  }

  function errorText(status, body) {
    if (status === 429) return "The run queue is full: try again in a minute.";
    if (!body || typeof body.message !== "string") return "The report could not be started.";
    return body.message;
  }

  function Control(button) {
    this.button = button;
    this.status = document.getElementById(button.getAttribute("data-status"));
    this.form = document.querySelector(button.getAttribute("data-form") || "form.none");
    this.offer = (button.getAttribute("data-offer") || "report.html report.pdf").split(/\s+/);
    this.fetchName = button.getAttribute("data-fetch") || "";
    this.busy = false;
    button.hidden = false;
    var wrap = button.parentElement && button.parentElement.closest("[hidden]");
    if (wrap) wrap.hidden = false;
    button.addEventListener("click", this.start.bind(this));
  }

  // the status element: a sentence, a progress bar while the run is on, then links
  Control.prototype.show = function (text, opts) {
    opts = opts || {};
    var box = this.status;
    if (!box) return;
    box.textContent = "";
    box.classList.toggle("error", !!opts.bad);
    box.appendChild(document.createTextNode(text));
    if (opts.progress) {
      var bar = document.createElement("progress");
      bar.setAttribute("aria-label", "report progress");
      box.appendChild(document.createTextNode(" "));
      box.appendChild(bar);
    }
    (opts.links || []).forEach(function (link, i) {
      box.appendChild(document.createTextNode(i ? " · " : " "));
      var a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.label;
      a.setAttribute("download", "");
      a.setAttribute("data-artifact", link.name);
      box.appendChild(a);
    });
  };

  Control.prototype.done = function () {
    this.busy = false;
    this.button.disabled = false;
    this.button.removeAttribute("aria-busy");
  };

  Control.prototype.start = function () {
    if (this.busy) return;
    this.busy = true;
    this.button.disabled = true;
    this.button.setAttribute("aria-busy", "true");
    this.show("Starting the report…", { progress: true });
    var self = this;
    fetch(this.button.getAttribute("data-runs-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json",
                 "X-XSRFToken": xsrfToken() },
      body: JSON.stringify({ parameters: formValues(this.form) })
    }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; },
                           function () { return { status: r.status, body: null }; });
    }).then(function (answer) {
      var runs = answer.body && answer.body.runs;
      if (answer.status !== 202 || !runs || !runs.length) {
        self.show(errorText(answer.status, answer.body), { bad: true });
        self.done();
        return;
      }
      self.follow(runs[0]);
    }, function () {
      self.show("The gallery could not be reached: try again.", { bad: true });
      self.done();
    });
  };

  Control.prototype.follow = function (run) {
    var self = this;
    var started = Date.now();
    var runningSince = null;

    function step(current) {
      if (FINISHED[current.state]) {
        self.finish(current);
        return;
      }
      if (current.state === "running") {
        runningSince = runningSince || Date.now();
        var secs = Math.round((Date.now() - runningSince) / 1000);
        self.show("Running the app" + (secs ? " (" + secs + " s)" : "") + "…",
                  { progress: true });
      } else {
        self.show(current.queue_position
          ? "Queued: place " + current.queue_position + " in the queue."
          : "Queued.", { progress: true });
      }
      var elapsed = Date.now() - started;
      if (elapsed > GIVE_UP_MS) {
        self.show("The report is taking too long: see the app's recent runs later.",
                  { bad: true });
        self.done();
        return;
      }
      window.setTimeout(poll, interval(elapsed));
    }

    function poll() {
      fetch(run.url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (current) {
          if (current && current.state) { step(current); return; }
          window.setTimeout(poll, 5000);
        }, function () { window.setTimeout(poll, 5000); });
    }

    step(run);
  };

  Control.prototype.links = function (run) {
    var urls = run.artifact_urls || {};
    return this.offer.filter(function (name) { return urls[name]; }).map(function (name) {
      return { name: name, label: LABELS[name] || name, href: urls[name] + "?download=1" };
    });
  };

  Control.prototype.finish = function (run) {
    this.done();
    var links = this.links(run);
    if (run.state === "passed") {
      var urls = run.artifact_urls || {};
      if (this.fetchName && urls[this.fetchName]) {
        this.show("Report ready: downloading it.", { links: links });
        this.download(urls[this.fetchName] + "?download=1");
      } else if (this.fetchName) {
        this.show("The report is ready, but this gallery made no " +
                  (LABELS[this.fetchName] || this.fetchName) + ".", { links: links, bad: true });
      } else {
        this.show("Report ready:", { links: links });
      }
      return;
    }
    if (run.state === "cancelled") {
      this.show("The run was cancelled.", { bad: true });
      return;
    }
    var errors = (run.findings || []).filter(function (f) { return f.severity === "error"; });
    this.show("The app failed on the server" +
              (errors.length ? ": " + errors[0].message : ".") +
              (links.length ? " What it produced:" : ""), { links: links, bad: true });
  };

  Control.prototype.download = function (href) {
    var a = document.createElement("a");
    a.href = href;
    a.setAttribute("download", "");
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
  };

  if (!window.fetch) return;
  Array.prototype.forEach.call(document.querySelectorAll("button[data-run-report]"),
                               function (button) { return new Control(button); });
})();
