// The app page (templates/app_form.html): keeps the link to share in step with the parameter
// form, copies it, and leaves values still at their default out of the URL (a shorter link,
// and the app opens from its preheated default page when nothing was changed).
(function () {
  "use strict";
  var form = document.querySelector("form.param-form");
  var link = document.getElementById("share-link");
  var copy = document.querySelector("[data-copy-link]");

  function isDefault(el) {
    if (el.tagName === "SELECT") {
      var first = null;
      for (var i = 0; i < el.options.length; i++) {
        if (el.options[i].defaultSelected) { first = el.options[i]; break; }
      }
      return (first || el.options[0] || {}).value === el.value;
    }
    return el.value === el.defaultValue;
  }

  function fields() {
    return form ? Array.prototype.filter.call(form.elements, function (el) {
      return el.name && (el.tagName === "INPUT" || el.tagName === "SELECT");
    }) : [];
  }

  function query() {
    var params = new URLSearchParams();
    fields().forEach(function (el) { if (!isDefault(el)) { params.append(el.name, el.value); } });
    var text = params.toString();
    return text ? "?" + text : "";
  }

  function update() {
    if (!link) { return; }
    var url = link.getAttribute("data-base") + query();
    link.href = url;
    link.textContent = url;
  }

  if (form) {
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", function () {
      fields().forEach(function (el) { if (isDefault(el)) { el.disabled = true; } });
    });
    // back from the app (page cache): the form must be usable again
    window.addEventListener("pageshow", function () {
      fields().forEach(function (el) { el.disabled = false; });
      update();
    });
  }

  function copied(ok) {
    copy.textContent = ok ? "Copied" : "Press Ctrl+C to copy";
    window.setTimeout(function () { copy.textContent = "Copy link"; }, 2000);
  }

  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "absolute";
    area.style.left = "-9999px";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }

  if (copy && link) {
    copy.hidden = false;
    copy.addEventListener("click", function () {
      var text = link.href;
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { copied(true); },
          function () { copied(fallback(text)); });
      } else {
        copied(fallback(text));
      }
    });
  }
  update();
}());
