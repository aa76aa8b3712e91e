// The app frame (templates/app_frame.html): copy-link button, start-up progress and the
// download of the current result.
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

  // ---- Download HTML: the current result as one file ------------------------------------
  // The app runs sandboxed in an opaque origin: this page cannot read its document. It asks
  // the app's page (the nbapps Voilà template answers) for a snapshot by postMessage and builds
  // the file from the answer, which is untrusted data: only the iframe's own window is heard,
  // sizes are capped, the HTML is parsed in an inert document and cleaned, nothing of it ever
  // enters this page's DOM, and the file's own CSP lets no script run but the gallery's widget
  // bundle.

  var REQUEST = "nbapps:snapshot-request";
  var ANSWER = "nbapps:snapshot";
  var ANSWER_MS = 8000;
  var MAX_CHARS = 24 * 1024 * 1024;
  var MARK = "data-nbapps-widget";
  var MODEL_ID = /^[A-Za-z0-9_.-]{1,128}$/;
  var BUILTIN = ["@jupyter-widgets/base", "@jupyter-widgets/controls", "@jupyter-widgets/output"];
  var DROP = "script, iframe, frame, frameset, object, embed, applet, base, meta, link, form, " +
             "template, noscript, portal, [" + MARK + "] [" + MARK + "]";
  var URL_ATTRS = ["href", "src", "action", "formaction", "xlink:href", "poster", "background",
                   "data", "ping", "srcset"];
  var FILE_STYLE = [
    "body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1d2330;",
    "       margin: 0 auto; max-width: 1100px; padding: 1rem; line-height: 1.45; }",
    ".nbapps-saved { border-bottom: 1px solid #dde1e8; margin-bottom: 1rem; }",
    ".nbapps-saved h1 { font-size: 1.4rem; margin: 0 0 .25rem; }",
    ".nbapps-saved p { color: #5b6475; margin: 0 0 .75rem; font-size: .9rem; }",
    "img, svg, video { max-width: 100%; height: auto; }",
    "table { border-collapse: collapse; margin: .5rem 0; }",
    "th, td { border: 1px solid #dde1e8; padding: .25rem .5rem; text-align: right; }",
    "pre { white-space: pre-wrap; overflow-wrap: anywhere; }",
    ".anchor-link, .jp-InternalAnchorLink { display: none; }",
    "/* the widget bundle renders a view into .widget-subarea: the static copy steps aside */",
    ".nbapps-widget:has(> .widget-subarea) > .nbapps-fallback { display: none; }",
    ".nbapps-fallback .noUi-target, .nbapps-fallback .slider-container { display: none; }",
    ".nbapps-fallback .widget-inline-hbox, .nbapps-fallback .widget-hbox {",
    "  display: flex; flex-wrap: wrap; gap: .25rem .75rem; align-items: baseline; }",
    ".nbapps-fallback .widget-vbox { display: flex; flex-direction: column; }"
  ].join("\n");

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function stamp(d) {
    return "" + d.getFullYear() + pad(d.getMonth() + 1) + pad(d.getDate()) + "-" +
           pad(d.getHours()) + pad(d.getMinutes());
  }

  function readable(d) {
    var off = -d.getTimezoneOffset();
    var zone = "UTC" + (off < 0 ? "-" : "+") + pad(Math.floor(Math.abs(off) / 60)) + ":" +
               pad(Math.abs(off) % 60);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
           pad(d.getHours()) + ":" + pad(d.getMinutes()) + " (" + zone + ")";
  }

  function randomId() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  function isObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }

  // the models the widget bundle can render by itself, and only those whose every referenced
  // model is kept too (the bundle refuses a whole state when one model cannot be loaded)
  function renderableState(text) {
    var parsed;
    try { parsed = JSON.parse(text); } catch (e) { return null; }
    if (!isObject(parsed) || !isObject(parsed.state)) return null;
    var models = parsed.state;
    var kept = {};
    Object.keys(models).forEach(function (id) {
      var m = models[id];
      var st = isObject(m) && isObject(m.state) ? m.state : null;
      if (!MODEL_ID.test(id) || !st || BUILTIN.indexOf(m.model_module) < 0) return;
      if (st._view_module && BUILTIN.indexOf(st._view_module) < 0) return;
      kept[id] = m;
    });
    var changed = true;
    while (changed) {
      changed = false;
      Object.keys(kept).forEach(function (id) {
        var refs = JSON.stringify(kept[id].state).match(/IPY_MODEL_[A-Za-z0-9_.-]+/g) || [];
        for (var i = 0; i < refs.length; i++) {
          if (!kept[refs[i].slice(10)]) { delete kept[id]; changed = true; return; }
        }
      });
    }
    return { version_major: 2, version_minor: 0, state: kept };
  }

  function unsafeUrl(value) {
    var v = value.replace(/[\u0000-\u0020\u007f-\u00a0]/g, "").toLowerCase();
    return /^(javascript|vbscript|data:text\/html|data:image\/svg|data:application)/.test(v) ||
           v.indexOf("javascript:") >= 0;
  }

  // the app's HTML, parsed in an inert document (nothing loads, nothing runs) and cleaned
  function cleanOutputs(html, state) {
    var doc = new DOMParser().parseFromString("<!DOCTYPE html><body>" + html, "text/html");
    doc.querySelectorAll(DROP).forEach(function (el) { el.remove(); });
    doc.body.querySelectorAll("*").forEach(function (el) {
      Array.prototype.slice.call(el.attributes).forEach(function (attr) {
        var name = attr.name.toLowerCase();
        if (name.indexOf("on") === 0 || name === "srcdoc" ||
            (name === "style" && /expression|url\s*\(\s*['"]?\s*javascript/i.test(attr.value)) ||
            (URL_ATTRS.indexOf(name) >= 0 && unsafeUrl(attr.value))) {
          el.removeAttribute(attr.name);
        }
      });
    });
    // a widget: its static copy (shown when the bundle cannot render it) and its view
    doc.querySelectorAll("[" + MARK + "]").forEach(function (el) {
      var id = el.getAttribute(MARK);
      el.removeAttribute(MARK);
      var fallback = doc.createElement("div");
      fallback.className = "nbapps-fallback";
      while (el.firstChild) fallback.appendChild(el.firstChild);
      el.className = "nbapps-widget";
      el.appendChild(fallback);
      if (MODEL_ID.test(id) && state && state.state[id]) {
        var view = doc.createElement("script");
        view.type = "application/vnd.jupyter.widget-view+json";
        view.textContent = JSON.stringify({ version_major: 2, version_minor: 0, model_id: id });
        el.appendChild(view);
      }
    });
    return doc.body;
  }

  function fileCsp(embed) {
    return "default-src 'none'; script-src " + embed + " 'unsafe-eval'; " +
           "style-src 'unsafe-inline'; img-src data: blob:; media-src data: blob:; " +
           "font-src data:; base-uri 'none'; form-action 'none'";
  }

  function buildFile(button, answer, when) {
    var title = button.getAttribute("data-title") || "App";
    var link = button.getAttribute("data-link") || "";
    var embedUrl = new URL(button.getAttribute("data-embed"), document.baseURI);
    var embed = embedUrl.origin + embedUrl.pathname;
    var state = answer.state === null ? null : renderableState(answer.state);
    var doc = document.implementation.createHTMLDocument(title);
    var meta = doc.createElement("meta");
    meta.setAttribute("charset", "utf-8");
    doc.head.prepend(meta);
    var csp = doc.createElement("meta");
    csp.httpEquiv = "Content-Security-Policy";
    csp.content = fileCsp(embed);
    doc.head.appendChild(csp);
    var viewport = doc.createElement("meta");
    viewport.name = "viewport";
    viewport.content = "width=device-width, initial-scale=1";
    doc.head.appendChild(viewport);
    var style = doc.createElement("style");
    style.textContent = FILE_STYLE;
    doc.head.appendChild(style);
    var header = doc.createElement("header");
    header.className = "nbapps-saved";
    var h1 = doc.createElement("h1");
    h1.textContent = title;
    var line = doc.createElement("p");
    var a = doc.createElement("a");
    a.href = link;
    a.textContent = link;
    line.append("Saved from ", a, " on " + readable(when) + ". Controls show their values " +
                "at that moment; they do not recompute.");
    header.append(h1, line);
    var main = doc.createElement("main");
    var outputs = cleanOutputs(answer.html, state);
    while (outputs.firstChild) main.appendChild(doc.adoptNode(outputs.firstChild));
    doc.body.append(header, main);
    if (state && Object.keys(state.state).length) {
      var data = doc.createElement("script");
      data.type = "application/vnd.jupyter.widget-state+json";
      // "<" escaped: the JSON can never close its script element
      data.textContent = JSON.stringify(state).replace(/</g, "\\u003c");
      doc.head.appendChild(data);
      var bundle = doc.createElement("script");
      bundle.src = embedUrl.href;
      doc.body.appendChild(bundle);
    }
    return "<!DOCTYPE html>\n" + doc.documentElement.outerHTML + "\n";
  }

  // the ticket in the iframe's URL authorises the app's requests: keep it out of the file
  function withoutTicket(text, frame) {
    var m = /\/~t\/([^/?#]+)\//.exec(frame.getAttribute("src") || "");
    return m ? text.split(m[1]).join("~") : text;
  }

  function offer(text, name) {
    var url = URL.createObjectURL(new Blob([text], { type: "text/html;charset=utf-8" }));
    var link = document.createElement("a");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  function setupDownload() {
    var button = document.querySelector("button#download[data-embed]");
    var frame = document.getElementById("app-view");
    var status = document.getElementById("copy-status");
    if (!button || !frame || !window.DOMParser || !window.crypto) return;
    button.hidden = false;
    var pending = null;

    function say(text, bad) {
      status.textContent = text;
      status.classList.toggle("error", !!bad);
      window.setTimeout(function () {
        if (status.textContent === text) status.textContent = "";
      }, bad ? 15000 : 4000);
    }

    function finish(text, bad) {
      if (pending) window.clearTimeout(pending.timer);
      pending = null;
      button.disabled = false;
      button.removeAttribute("aria-busy");
      if (text) say(text, bad);
    }

    window.addEventListener("message", function (event) {
      var data = event.data;
      if (!pending || event.source !== frame.contentWindow || !isObject(data) ||
          data.type !== ANSWER || data.id !== pending.id) return;
      if (typeof data.error === "string") {
        finish(data.error === "loading"
          ? "The app is still loading: try again when it has finished."
          : "The app could not save its result.", true);
        return;
      }
      if (typeof data.html !== "string" ||
          (data.state !== null && typeof data.state !== "string") ||
          data.html.length + (data.state || "").length > MAX_CHARS) {
        finish("The app's result is too large or malformed to save.", true);
        return;
      }
      var answer = { html: withoutTicket(data.html, frame),
                     state: data.state === null ? null : withoutTicket(data.state, frame) };
      var when = new Date();
      try {
        offer(buildFile(button, answer, when), (button.getAttribute("data-slug") || "app") +
              "-" + stamp(when) + ".html");
      } catch (e) {
        finish("The result could not be saved.", true);
        return;
      }
      finish("Saved.", false);
    });

    button.addEventListener("click", function () {
      if (pending || !frame.contentWindow) return;
      pending = { id: randomId() };
      pending.timer = window.setTimeout(function () {
        finish("The app did not answer: wait until it has finished loading, then try again.",
               true);
      }, ANSWER_MS);
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
      say("Saving the current result…", false);
      // the app's document has an opaque origin: no target origin can name it
      frame.contentWindow.postMessage({ type: REQUEST, id: pending.id }, "*");
    });
  }

  setupCopy();
  setupProgress();
  setupDownload();
})();
