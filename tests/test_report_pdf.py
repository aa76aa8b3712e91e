"""PDF reports: a real executed notebook, exported to HTML with its widget state, printed by
Debian's Chromium (nbapps.report_pdf), checked as an image (pdftoppm) and as text (pdftotext)."""
from __future__ import annotations

import asyncio
import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell
from PIL import Image

from nbapps import report_pdf
from nbapps.errors import NbappsError
from nbapps.execute import run_notebook
from nbapps.report_pdf import CHROMIUM, html_to_pdf, printer_launches, shutdown
from tests.nbfactory import make_notebook

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

TITLE = "Quarterly sales"


def _tools() -> None:
    missing = [t for t in ("pdftoppm", "pdftotext") if shutil.which(t) is None]
    if missing or not Path(CHROMIUM).exists():
        pytest.skip(f"needs {CHROMIUM} and poppler-utils (scripts/install-system-deps.sh)")


def _text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report.html of an executed widget notebook (nbconvert's lab template, code hidden)."""
    _tools()
    from nbconvert import HTMLExporter

    nb = make_notebook(
        params='n = 7  # how many\nlabel = "Units"  # a label\n',
        extra=["total = sum(i * i for i in range(n + 1))"],
        widget=("import ipywidgets as w\n"
                "w.VBox([w.IntSlider(value=n, description=label),\n"
                "        w.HTML(f'<b>WIDGET-TOTAL-{total}</b>')])"),
        meta={"title": TITLE})
    nb.cells[0] = new_markdown_cell(f"# {TITLE}")
    nb.cells.append(new_code_cell("print('computed', total)"))
    folder = tmp_path_factory.mktemp("report")
    result = run_notebook(nb, {}, cwd=folder, cell_timeout=120, total_timeout=300)
    assert result.ok, result.findings
    assert "widgets" in result.nb.metadata  # the state the PDF must render
    html, _ = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                           exclude_output_prompt=True).from_notebook_node(result.nb)
    path = folder / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_executed_report_prints_with_title_values_and_rendered_widgets(report: Path) -> None:
    pdf = report.parent / "report.pdf"
    html_to_pdf(report, pdf, title=TITLE)
    text = _text(pdf)
    assert TITLE in text
    assert "computed 140" in text  # printed by a cell
    assert "WIDGET-TOTAL-140" in text  # inside a widget: the state was rendered, not its fallback
    assert "Units" in text  # the slider's description
    subprocess.run(["pdftoppm", "-r", "50", "-png", "-singlefile", str(pdf),
                    str(report.parent / "page")], check=True, capture_output=True)
    with Image.open(report.parent / "page.png") as image:
        width, height = image.size
        assert 300 < width < 600 and 400 < height < 800  # A4 at 50 dpi: 413 x 585
        gray = image.convert("L")
        dark = sum(gray.histogram()[:128])  # pixels darker than mid-gray
    assert dark > 500, "the first page is (nearly) blank"
    assert not [p for p in report.parent.iterdir() if p.name.endswith(".tmp")]


def test_report_reaches_no_network_or_local_file(tmp_path: Path) -> None:
    """A hostile report: its network requests never leave Chromium, ``file://`` and paths
    outside its folder are refused, while a file beside it loads. Called on a thread that runs
    an asyncio loop (where Playwright's sync API alone would refuse to work)."""
    _tools()
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"LEAKED")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        secret = tmp_path / "secret.txt"
        secret.write_text("TOP-SECRET-FILE", encoding="utf-8")
        folder = tmp_path / "run"
        folder.mkdir()
        (folder / "style.css").write_text("h1 { color: rgb(200, 0, 0); }", encoding="utf-8")
        report = folder / "report.html"
        report.write_text(
            "<html><head><title>t</title><link rel=stylesheet href=style.css></head><body>"
            "<h1>Local asset ok</h1>"
            f'<img src="{url}/img"><script src="{url}/script.js"></script>'
            f'<iframe src="file://{secret}"></iframe><iframe src="../secret.txt"></iframe>'
            f"<script>fetch('{url}/fetch').catch(() => {{}});"
            f"try {{ new WebSocket('{url.replace('http', 'ws')}/ws'); }} catch (e) {{}}</script>"
            "<p id=color></p><script>document.getElementById('color').textContent = "
            "'COLOR ' + getComputedStyle(document.querySelector('h1')).color;</script>"
            "</body></html>", encoding="utf-8")

        async def on_loop() -> None:
            html_to_pdf(report, folder / "report.pdf", timeout=60)

        asyncio.run(on_loop())
        text = _text(folder / "report.pdf")
    finally:
        server.shutdown()
        server.server_close()
    assert "Local asset ok" in text and "COLOR rgb(200, 0, 0)" in text  # style.css loaded
    assert "TOP-SECRET-FILE" not in text and "LEAKED" not in text
    assert hits == []


def test_unreadable_report_and_timeout_are_coded(tmp_path: Path) -> None:
    _tools()
    with pytest.raises(NbappsError) as missing:
        html_to_pdf(tmp_path / "nope.html", tmp_path / "nope.pdf")
    assert missing.value.code == "NBA386"
    (tmp_path / "folder.html").mkdir()
    with pytest.raises(NbappsError) as folder:
        html_to_pdf(tmp_path / "folder.html", tmp_path / "folder.pdf")
    assert folder.value.code == "NBA386"

    busy = tmp_path / "busy.html"  # never finishes loading
    busy.write_text("<html><body><p>busy</p><script>for (;;) {}</script></body></html>",
                    encoding="utf-8")
    with pytest.raises(NbappsError) as slow:
        html_to_pdf(busy, tmp_path / "busy.pdf", timeout=4)
    assert slow.value.code == "NBA387"
    assert not (tmp_path / "busy.pdf").exists()


@pytest.fixture(autouse=True)
def _no_pdf_threads_left() -> Iterator[None]:
    yield
    # printers keep their Chromium for a while; shutdown ends them, and nothing else is left
    shutdown(15)
    for thread in threading.enumerate():
        assert not thread.name.startswith(("nbapps-pdf-printer", "nbapps-report-pdf")), \
            f"{thread.name} was left running"


def test_widgets_that_cannot_render_are_printed_as_their_fallback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A widget of a library the pinned renderer does not have (it would be fetched from a
    CDN, which is refused) never renders: after a bounded wait the PDF is printed with the
    fallback text, and NBA389 is logged."""
    _tools()
    import json

    state = {"version_major": 2, "version_minor": 0, "state": {"m1": {
        "model_name": "FancyModel", "model_module": "fancy-widgets",
        "model_module_version": "1.0.0",
        "state": {"_model_name": "FancyModel", "_model_module": "fancy-widgets",
                  "_model_module_version": "1.0.0", "_view_name": "FancyView",
                  "_view_module": "fancy-widgets", "_view_module_version": "1.0.0"}}}}
    view = {"version_major": 2, "version_minor": 0, "model_id": "m1"}
    report = tmp_path / "report.html"
    report.write_text(
        "<html><body><h1>Fancy report</h1>"
        f'<script type="application/vnd.jupyter.widget-state+json">{json.dumps(state)}</script>'
        f'<div><script type="application/vnd.jupyter.widget-view+json">{json.dumps(view)}'
        "</script><p>FALLBACK-TEXT</p></div>"
        '<script src="/static/widgets/embed.js"></script></body></html>', encoding="utf-8")
    with caplog.at_level("WARNING", logger="nbapps.report_pdf"):
        html_to_pdf(report, tmp_path / "report.pdf", timeout=8)
    assert "FALLBACK-TEXT" in _text(tmp_path / "report.pdf")
    assert any("NBA389" in r.getMessage() for r in caplog.records), caplog.text


def test_printers_keep_chromium_between_reports_and_a_hung_one_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chromium's start (~2 s of CPU) is paid once for many reports: three reports in a row
    are printed by one launch. A report that spins forever fails alone (NBA387) and the next
    report prints. An idle printer closes its Chromium after KEEP_SECONDS."""
    _tools()
    monkeypatch.setattr(report_pdf, "KEEP_SECONDS", 3.0)
    for n in range(3):
        page = tmp_path / f"r{n}.html"
        page.write_text(f"<html><body><h1>REPORT-{n}</h1></body></html>", encoding="utf-8")
        html_to_pdf(page, tmp_path / f"r{n}.pdf", timeout=30)
        assert f"REPORT-{n}" in _text(tmp_path / f"r{n}.pdf")
    assert printer_launches() == 1

    busy = tmp_path / "busy.html"
    busy.write_text("<html><body><script>for (;;) {}</script></body></html>", encoding="utf-8")
    with pytest.raises(NbappsError) as slow:
        html_to_pdf(busy, tmp_path / "busy.pdf", timeout=4)
    assert slow.value.code == "NBA387"
    after = tmp_path / "after.html"
    after.write_text("<html><body><h1>AFTER-BUSY</h1></body></html>", encoding="utf-8")
    html_to_pdf(after, tmp_path / "after.pdf", timeout=30)
    assert "AFTER-BUSY" in _text(tmp_path / "after.pdf")

    deadline = time.monotonic() + 20
    while any(t.name == "nbapps-pdf-printer" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "an idle printer kept its Chromium"
        time.sleep(0.2)
