// The app frame (templates/app_frame.html): copy-link button and start-up progress.
// The page works without this script; the app itself runs sandboxed in the iframe.
(function () {
  "use strict";

  function setupCopy() {
    var button = document.getElementById("copy-link");
    var status = document.getElementById("copy-status");
    if (!button) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var url = button.getAttribute("data-url");
      var done = function (ok) {
        status.textContent = ok ? "Link copied." : "Copy this link: " + url;
        window.setTimeout(function () { status.textContent = ""; }, ok ? 2500 : 15000);
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(url).then(function () { done(true); },
                                                function () { done(false); });
      } else {
        done(false);
      }
    });
  }

  function setupProgress() {
    var box = document.getElementById("app-progress");
    var frame = document.getElementById("app-view");
    if (!box || !frame) return;
    var loaded = false;
    var note = document.getElementById("progress-note");
    var url = box.getAttribute("data-status-url");
    frame.addEventListener("load", function () {
      loaded = true;
      box.hidden = true;
    });
    if (box.getAttribute("data-ready") === "true") return;
    box.hidden = false;

    function show(s) {
      var items = box.querySelectorAll("li[data-step]");
      for (var i = 0; i < items.length; i++) {
        var n = i + 1;
        items[i].className = n < s.step ? "done" : (n === s.step ? "now" : "");
        var count = items[i].querySelector(".count");
        count.textContent = n === s.step && s.total ? " (" + s.done + " of " + s.total + ")" : "";
      }
      if (s.state === "unavailable" || s.state === "off") {
        note.textContent = s.message + (s.reference ? " Reference: " + s.reference + "." : "");
      } else if (s.state === "busy") {
        note.textContent = s.message + (s.queue ? " Pages ahead of yours: " + s.queue + "." : "");
      } else {
        note.textContent = "The app opens by itself when it is ready.";
      }
    }

    function poll() {
      if (loaded) return;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (s) {
          if (s && s.state === "ready") {
            // the app's page is on its way: it shows its own progress ("Executing k of n")
            loaded = true;
            box.hidden = true;
            return;
          }
          if (s) show(s);
          if (!loaded) window.setTimeout(poll, s && s.state === "unavailable" ? 2000 : 400);
        }, function () { if (!loaded) window.setTimeout(poll, 2000); });
    }
    poll();
  }

  setupCopy();
  setupProgress();
})();
