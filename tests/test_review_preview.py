"""The review preview: every cell's source, the run's outputs and widgets, timings, sandbox.

Unit tests render notebooks with :mod:`nbapps.server.notebook_view` directly; the browser test
publishes a real bundle (real papermill run, widget state saved) to a real gallery and opens the
submission page in real Chromium: widgets render inside the sandboxed frame, scripts from the
notebook's outputs do not run.
"""
from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
import time
from html import unescape
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from nbapps.server.notebook_view import render_preview, review_copy
from nbapps.server.review_data import CellTiming, CheckView, RunView
from nbapps.server.safe_html import EMBED_MARKER, frame_csp, renderer_installed
from nbapps.server.widget_state import renderable_widgets
from tests.chromium import launched_chromium
from tests.nbfactory import make_notebook, write_notebook
from tests.server_harness import thread_gallery

STATE = "application/vnd.jupyter.widget-state+json"
VIEW = "application/vnd.jupyter.widget-view+json"
HIDDEN_LINE = 'hidden_note = "this line runs hidden"'
PWN = "document.body.setAttribute('data-pwned-{}', '1')"


def text_of(html: str) -> str:
    """What a reader sees of an HTML fragment: tags dropped, entities decoded."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def model(name: str, module: str = "@jupyter-widgets/controls", **state) -> dict:
    return {"model_name": name, "model_module": module, "model_module_version": "2.0.0",
            "state": {"_model_name": name, "_model_module": module, **state}}


def view(model_id: str, text: str) -> dict:
    return new_output("display_data", data={
        "text/plain": text, VIEW: {"version_major": 2, "version_minor": 0, "model_id": model_id}})


def executed_pair() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(stored source, executed copy) with built-in, custom and unsaved widgets."""
    src = make_notebook(extra=[HIDDEN_LINE, "m = 1", "c = 2", "gone = 3"])
    cells = src.cells  # 0 md, 1 params, 2 hidden, 3 m, 4 c, 5 gone, 6 widget
    cells[2].metadata["jupyter"] = {"source_hidden": True, "outputs_hidden": True}
    cells[3].metadata["transient"] = {"remove_source": True}
    cells[3].metadata["tags"] = ["widget"]
    cells[4].metadata["tags"] = ["widget"]
    cells[5].metadata["tags"] = ["widget"]
    run = copy.deepcopy(src)
    run.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0, "state": {
        "lay": model("LayoutModel", "@jupyter-widgets/base"),
        "slider": model("IntSliderModel", value=3, layout="IPY_MODEL_lay"),
        "html": model("HTMLModel", value='<b>x</b><img src=x onerror="alert(1)">',
                      layout="IPY_MODEL_lay"),
        "box": model("VBoxModel", children=["IPY_MODEL_slider", "IPY_MODEL_html"]),
        "fig": model("FigureModel", "bqplot", layout="IPY_MODEL_lay"),
        "outer": model("HBoxModel", children=["IPY_MODEL_fig"]),
        "out": model("OutputModel", "@jupyter-widgets/output", outputs=[
            {"output_type": "display_data", "metadata": {},
             "data": {"application/javascript": "alert(2)", "text/html": "<script>x()</script>ok",
                      "text/plain": "ok"}}]),
    }}}
    run.cells[2].outputs = [new_output("stream", text="hidden cell output\n")]
    run.cells[3].outputs = [view("box", "VBox(...)"), view("out", "Output()")]
    run.cells[4].outputs = [view("outer", "HBox(children=(Figure(...),))")]
    run.cells[5].outputs = [view("never-saved", "IntSlider(value=5)")]
    run.cells[6].outputs = [new_output("stream", text="not this cell's output\n")]
    run.cells[6].source = "print('the executed copy says something else')"
    return src, run


def test_every_cell_source_is_shown_with_its_role():
    src, run = executed_pair()
    html = render_preview(src, run, renderer=True)
    body = html[html.find("<body"):]
    text = text_of(body)
    for cell in src.cells:
        for line in cell.source.splitlines():
            assert line in text, line
    assert body.count('class="nbapps-cell ') == len(src.cells)
    # with widget cells, the others run hidden; markdown not tagged is not shown
    roles = re.findall(r'nbapps-badge-role">([^<]+)<', body)
    assert roles == ["not shown", "runs hidden", "runs hidden", "output shown in the app",
                     "output shown in the app", "output shown in the app",
                     "output shown in the app"]
    assert "hidden cell output" in body  # hidden cells' outputs too
    # the executed cell whose source differs from the stored one shows no output
    assert "not this cell&#x27;s output" not in body and "not this cell's output" not in body
    assert "differ from the stored source" in body


def test_widget_state_is_reduced_and_sanitized():
    src, run = executed_pair()
    widgets = renderable_widgets(run.metadata, lambda s: s.replace("onerror", "X"))
    assert set(widgets.models) == {"lay", "slider", "html", "box", "out"}
    assert widgets.blocked == {"fig": ("bqplot",), "outer": ("bqplot",)}
    assert "onerror" not in widgets.models["html"]["state"]["value"]
    captured = widgets.models["out"]["state"]["outputs"][0]["data"]
    assert set(captured) == {"text/html", "text/plain"}
    assert "</script" not in widgets.to_json() and "<" not in widgets.to_json()

    html = render_preview(src, run, renderer=True)
    body = html[html.find("<body"):]
    state = re.search(r'<script type="application/vnd.jupyter.widget-state\+json">(.*?)</script>',
                      body, re.S)
    assert state and set(json.loads(state.group(1))["state"]) == set(widgets.models)
    assert "onerror" not in state.group(1) and "alert(2)" not in state.group(1)
    views = re.findall(r'<script type="application/vnd.jupyter.widget-view\+json">(.*?)</script>',
                       body)
    assert [json.loads(v)["model_id"] for v in views] == ["box", "out"]
    assert "Custom widget (bqplot)" in body and "Widget without saved state" in body
    scripts = re.findall(r"<script\b[^>]*>", body)
    assert scripts.count(f'<script src="{EMBED_MARKER}">') == 1
    assert all("application/vnd.jupyter.widget" in s or EMBED_MARKER in s for s in scripts)


def test_without_renderer_or_widgets_no_script_at_all():
    src, run = executed_pair()
    html = render_preview(src, run, renderer=False)
    assert "<script" not in html[html.find("<body"):]
    assert "widget renderer is not installed" in html
    plain = make_notebook(widget="print('no widgets')")
    html = render_preview(plain, plain, renderer=True)
    assert "<script" not in html[html.find("<body"):]
    assert frame_csp(None).startswith("default-src 'none'") and "script-src" not in frame_csp(None)
    csp = frame_csp("http://127.0.0.1:1/static/widgets/")
    assert "script-src http://127.0.0.1:1/static/widgets/ 'unsafe-eval'" in csp
    assert "sandbox allow-scripts;" in csp and "allow-same-origin" not in csp
    assert "connect-src 'none'" in csp


def test_timings_and_run_summary():
    src, run = executed_pair()
    check = CheckView(state="passed", runs=[
        RunView("default parameters", {}, True, 2.5, cells=[
            CellTiming(2, 'n = 3  # how many', 0.01),
            CellTiming(3, HIDDEN_LINE, 1.25),
            CellTiming(99, "m = 1", 0.5),  # wrong number, found by its first line
        ]),
        RunView("test set 1", {"n": 7}, False, 3.75),
    ])
    _, _, summary = review_copy(src, run, check)
    assert [r.label for r in summary.runs] == ["default parameters", "test set 1"]
    html = render_preview(src, run, check, renderer=True)
    times = re.findall(r'aria-label="Cell (\d+)".*?(?:nbapps-time[^>]*>([0-9.]+) s<|</section>)',
                       html, re.S)
    assert [(n, t) for n, t in times if t] == [("2", "0.01"), ("3", "1.25"), ("4", "0.50")]
    assert "<code>n=7</code>" in html and "3.75 s" in html and ">failed<" in html
    assert "2.50 s" in html and ">ok<" in html


def _publishable(folder: Path) -> Path:
    nb = make_notebook(meta={"title": "Widget preview", "description": "Widgets in review."},
                       widget=None, extra=[
        HIDDEN_LINE + "\nimport ipywidgets as w\nfrom IPython.display import HTML, Javascript, "
        "display",
    ])
    widget_cells = [
        "w.IntSlider(value=n, min=0, max=10, description='count')",
        "w.VBox([w.Dropdown(options=['a', 'b'], value='b'), w.HTML(value='<b>bold</b>"
        "<img src=x onerror=\"" + PWN.format("html").replace("'", "\\'") + "\">')])",
        "display(HTML(\"<p>html out</p><script>" + PWN.format("script") + "</script>\"))\n"
        "display(Javascript(\"" + PWN.format("js") + "\"))",
        "o = w.Output()\nwith o:\n    print('captured in output')\no",
    ]
    for source in widget_cells:
        nb.cells.append(new_code_cell(source, metadata={"tags": ["widget"]}))
    nb.cells.append(new_markdown_cell("The end."))
    return write_notebook(nb, folder / "widgets.ipynb")


@pytest.mark.kernel
@pytest.mark.browser
def test_widgets_render_in_the_sandboxed_frame_and_output_scripts_do_not_run(tmp_path):
    from nbapps.bundle import build_bundle, pack_bundle
    from nbapps.validate import ValidationSettings, validate_notebook

    if not renderer_installed():
        pytest.fail("the widget renderer is missing: run `make widgets`")
    path = _publishable(tmp_path / "nb")
    report = validate_notebook(path, ValidationSettings())
    assert report.ok, [f.to_dict() for f in report.findings if f.is_error]
    archive = pack_bundle(build_bundle(path, tmp_path / "bundle", report=report).path)

    # a short data dir: the gallery's check runs kernels on Unix sockets under it (path limit)
    short = Path(tempfile.mkdtemp(prefix="nbrp-", dir="/tmp"))
    try:
        _render_in_chromium(short, archive)
    finally:
        shutil.rmtree(short, ignore_errors=True)


def _render_in_chromium(folder: Path, archive: bytes) -> None:
    with thread_gallery(folder) as g:
        with g.client("ana") as ana:
            r = ana.post("/api/submissions", content=archive,
                         headers={"Content-Type": "application/gzip"})
            assert r.status_code == 201, r.text
            vid = r.json()["id"]
            deadline = time.monotonic() + 240  # the gallery runs the submission itself
            while (detail := ana.get(f"/api/submissions/{vid}").json())["state"] == "validating":
                assert time.monotonic() < deadline, "the gallery's check did not finish"
                time.sleep(0.2)
            assert detail["state"] == "submitted", detail.get("check")
        with g.browser("rita") as rita:
            frame = rita.get(f"/submissions/{vid}/notebook")
            while "sandbox allow-scripts;" not in frame.headers["Content-Security-Policy"]:
                assert time.monotonic() < deadline, "no widgets in the preview"
                time.sleep(0.2)  # the run's outputs are being stored
                frame = rita.get(f"/submissions/{vid}/notebook")
        csp = frame.headers["Content-Security-Policy"]
        assert "sandbox allow-scripts;" in csp and "allow-same-origin" not in csp
        assert re.search(r"script-src http://127\.0\.0\.1:\d+/static/widgets/ 'unsafe-eval'", csp)
        assert HIDDEN_LINE in text_of(frame.text)

        with launched_chromium() as browser:
            page = browser.new_page()
            page.goto(f"{g.url}/login")
            page.fill('input[name="username"]', "rita")
            page.fill('input[name="password"]', g.users["rita"].password)
            page.click('button[type="submit"]')
            page.wait_for_load_state()
            deadline = time.monotonic() + 180  # until the gallery's run has widget state
            while True:
                page.goto(f"{g.url}/submissions/{vid}")
                nb = page.frame_locator("iframe.notebook-frame")
                try:
                    nb.locator(".widget-slider").first.wait_for(timeout=10_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
            nb.locator(".widget-dropdown select").first.wait_for()
            assert nb.locator(".widget-dropdown select").first.input_value() == "b"
            assert nb.locator(".widget-readout").first.inner_text() == "3"
            assert nb.locator(".widget-output", has_text="captured in output").count() == 1
            assert nb.locator(".widget-html b", has_text="bold").count() == 1
            inner = next(f for f in page.frames
                         if f.url.endswith(f"/submissions/{vid}/notebook"))
            attrs = inner.evaluate("Object.keys(document.body.dataset)")
            # no <script>, Javascript() or onerror of the outputs ran
            assert not [a for a in attrs if a.startswith("pwned")], attrs
            assert sorted(attrs) == ["jpThemeLight", "jpThemeName"]  # the template's own
            assert inner.evaluate("document.querySelectorAll('.nbapps-cell').length") == 8
            assert HIDDEN_LINE in inner.evaluate("document.body.innerText")
            # the gallery's own run: a time beside each of the 6 code cells, run summary
            assert nb.locator(".nbapps-time").count() == 6
            assert page.locator("table.runs td", has_text="ok").count() >= 1
            origin = inner.evaluate("self.origin")
            assert origin == "null"  # sandboxed without allow-same-origin
            Path("test-artifacts/review").mkdir(parents=True, exist_ok=True)
            page.screenshot(path="test-artifacts/review/preview-widgets.png", full_page=True)
