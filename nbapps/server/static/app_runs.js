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
//
// The app page's "Recent runs" table (templates/app_runs.html, section#runs) refreshes itself
// while one of its runs is queued or running: GET <runs url>?limit=N every 2 s (the runs URL
// of the page's Download report button), rows updated in place (state, time, downloads, first
// error as the API shows it to this viewer) and new runs added on top. Polling stops when every
// listed run has finished or the page is hidden, and starts again when it is shown, or when
// this page starts a run.
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
      if (recent) recent.refresh();
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

  // -- the recent runs list ---------------------------------------------------------------

  var ACTIVE = { queued: true, running: true };
  var RECENT_POLL_MS = 2000;
  var STATE_CLASS = { queued: "submitted", running: "submitted", passed: "approved",
                      failed: "rejected", error: "rejected", cancelled: "withdrawn" };
  var DOWNLOADS = [["report.html", "HTML"], ["report.pdf", "PDF"]];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // "2026-12-03T18:30:12.5+00:00" -> "2026-12-03 18:30 UTC" (the page's own format)
  function when(iso) {
    var t = el("time");
    if (!iso) return t;
    t.setAttribute("datetime", iso);
    t.textContent = iso.replace("T", " ").slice(0, 16) + " UTC";
    return t;
  }

  function RecentRuns(section, runsUrl) {
    this.section = section;
    this.runsUrl = runsUrl;
    this.limit = Math.max(section.querySelectorAll("tr[data-run]").length, 10);
    this.timer = null;
    this.inFlight = false;
    var self = this;
    document.addEventListener("visibilitychange", function () {
      if (document.hidden) self.stop(); else if (self.active()) self.refresh();
    });
    if (this.active()) this.later();
  }

  RecentRuns.prototype.rows = function () {
    return this.section.querySelectorAll("tr[data-run]");
  };

  RecentRuns.prototype.active = function () {
    return Array.prototype.some.call(this.rows(), function (tr) {
      // rows rendered by the server tell their state in the state badge
      var badge = tr.querySelector(".state");
      return ACTIVE[tr.getAttribute("data-state") || (badge ? badge.textContent.trim() : "")];
    });
  };

  RecentRuns.prototype.stop = function () {
    if (this.timer !== null) window.clearTimeout(this.timer);
    this.timer = null;
  };

  RecentRuns.prototype.later = function () {
    this.stop();
    if (document.hidden) return;
    this.timer = window.setTimeout(this.refresh.bind(this), RECENT_POLL_MS);
  };

  // one look at the app's newest runs; again in 2 s while one of them is not finished
  RecentRuns.prototype.refresh = function () {
    this.stop();
    if (this.inFlight) return;
    this.inFlight = true;
    var self = this;
    fetch(this.runsUrl + "?limit=" + this.limit, {
      credentials: "same-origin", headers: { "Accept": "application/json" }
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      self.inFlight = false;
      if (body && body.items) self.show(body.items);
      if (self.active() || !body) self.later();
    }, function () {
      self.inFlight = false;
      self.later();
    });
  };

  RecentRuns.prototype.tbody = function () {
    var body = this.section.querySelector("tbody");
    if (body) return body;
    var empty = this.section.querySelector("p.muted");
    if (empty) empty.remove();
    var wrap = el("div", "table-wrap");
    var table = el("table");
    var head = el("thead");
    var tr = el("tr");
    ["When", "By", "State", "Parameters", "Downloads"].forEach(function (label) {
      tr.appendChild(el("th", "", label));
    });
    head.appendChild(tr);
    table.appendChild(head);
    body = el("tbody");
    table.appendChild(body);
    wrap.appendChild(table);
    this.section.appendChild(wrap);
    return body;
  };

  RecentRuns.prototype.show = function (items) {
    var body = this.tbody();
    var keep = {};
    var self = this;
    items.slice(0, this.limit).forEach(function (run, index) {
      keep[run.id] = true;
      var tr = body.querySelector('tr[data-run="' + run.id + '"]');
      if (!tr) tr = el("tr");
      self.fill(tr, run);
      var at = body.children[index];
      if (at !== tr) body.insertBefore(tr, at || null);
    });
    Array.prototype.forEach.call(this.rows(), function (tr) {
      if (!keep[tr.getAttribute("data-run")]) tr.remove();
    });
  };

  // the row of one run, as templates/app_runs.html renders it
  RecentRuns.prototype.fill = function (tr, run) {
    tr.setAttribute("data-run", String(run.id));
    tr.setAttribute("data-state", run.state);
    tr.textContent = "";
    var cells = [];
    for (var i = 0; i < 5; i++) cells.push(tr.appendChild(el("td")));
    cells[0].className = "small";
    cells[0].appendChild(when(run.finished_at || run.started_at || run.created_at));
    cells[1].appendChild(document.createTextNode(run.owner || "gallery"));
    cells[1].appendChild(el("br"));
    cells[1].appendChild(el("span", "small muted", run.origin || ""));
    cells[2].appendChild(el("span", "state state-" + (STATE_CLASS[run.state] || run.state),
                            run.state));
    if (run.seconds !== null && run.seconds !== undefined) {
      cells[2].appendChild(el("br"));
      cells[2].appendChild(el("span", "small muted", run.seconds.toFixed(1) + " s"));
    }
    var errors = (run.findings || []).filter(function (f) {
      return (f.severity || "error") === "error";
    });
    if ((run.state === "failed" || run.state === "error") && errors.length) {
      cells[2].appendChild(el("br"));
      cells[2].appendChild(el("span", "small run-problem",
                              ((errors[0].code || "") + ": " + (errors[0].message || ""))
                                .slice(0, 300)));
    }
    cells[3].className = "small";
    var params = run.parameters || {};
    var names = Object.keys(params);
    if (names.length) {
      cells[3].textContent = names.map(function (k) {
        return k + "=" + JSON.stringify(params[k]);
      }).join(", ");
    } else {
      cells[3].appendChild(el("span", "muted", "defaults"));
    }
    var urls = run.artifact_urls || {};
    var links = DOWNLOADS.filter(function (d) { return urls[d[0]]; });
    if (!links.length) cells[4].appendChild(el("span", "muted", "\u2014"));
    links.forEach(function (d, j) {
      if (j) cells[4].appendChild(document.createTextNode(" \u00b7 "));
      var a = el("a", "", d[1]);
      a.href = urls[d[0]] + "?download=1";
      a.setAttribute("download", "");
      cells[4].appendChild(a);
    });
  };

  if (!window.fetch) return;
  var recent = null;
  var section = document.querySelector("section#runs");
  var runButton = document.querySelector("button[data-run-report][data-runs-url]");
  var runsUrl = section && (section.getAttribute("data-runs-url") ||
                            (runButton && runButton.getAttribute("data-runs-url")));
  if (section && runsUrl) recent = new RecentRuns(section, runsUrl);
  Array.prototype.forEach.call(document.querySelectorAll("button[data-run-report]"),
                               function (button) { return new Control(button); });
})();
