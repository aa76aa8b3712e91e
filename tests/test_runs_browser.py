"""A run's report in real Chromium (widgets rendered from their saved state, in the sandbox the
gallery serves it with) and its PDF (printed by Chromium, turned into a PNG with pdftoppm and
its text checked with pdftotext)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import thread_gallery
from tests.test_runs_api import BASE_ARGS, RECORDING, app_notebook, publish, wait_run

pytestmark = [pytest.mark.kernel, pytest.mark.browser]


def test_report_renders_its_widgets_and_prints_to_pdf(tmp_path):
    args = [a for a in BASE_ARGS if "run_pdf" not in a] + ["--NbappsServer.run_workers=1"]
    with thread_gallery(tmp_path, args=args) as g:
        publish(g, "sales", app_notebook([RECORDING]))
        with g.client("vic") as c:
            (queued,) = c.post("/api/apps/sales/runs",
                               json={"parameters": {"n": 7}}).json()["runs"]
            run = wait_run(c, queued["id"], timeout=180)
            assert run["state"] == "passed", run
            # offered, printed at this first download (nbapps.runs.pdf)
            assert run["on_request"] == ["report.pdf"], run["details"].get("notes")
            pdf = c.get(run["artifact_urls"]["report.pdf"])
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF")
        (tmp_path / "report.pdf").write_bytes(pdf.content)
        if shutil.which("pdftoppm") and shutil.which("pdftotext"):
            subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1",
                            str(tmp_path / "report.pdf"), str(tmp_path / "page")], check=True)
            assert list(tmp_path.glob("page*.png"))
            text = subprocess.run(["pdftotext", str(tmp_path / "report.pdf"), "-"],
                                  capture_output=True, text=True, check=True).stdout
            assert "Sales" in text and "n = 7" in text

        with launched_chromium() as browser:
            context = browser.new_context(extra_http_headers={
                "Authorization": f"Bearer {g.users['vic'].token}"})
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(g.url + run["artifact_urls"]["report.html"])
            page.wait_for_selector(".widget-slider", timeout=30_000)
            assert page.locator("h1").first.inner_text() == "Sales"
            assert "n = 5" not in page.content()  # no code
            # the sandbox: an opaque origin, no access to the gallery's cookies
            assert page.evaluate("() => { try { return document.cookie; } "
                                 "catch (e) { return 'blocked'; } }") == "blocked"
            context.close()
