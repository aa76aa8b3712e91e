"""Runs from the gallery's pages (issue 14 item 2) and who sees a run's findings.

One gallery (a thread, real kernels, one run worker with PDFs) serves the module: the app page's
*Download report* and *Recent runs*, the app frame's *Report (PDF)* driven in real Chromium
(static/app_runs.js: a POST with the page's XSRF token, polling, downloads), and the rule that a
run's findings and details reach only its owner, the app's analysts, reviewers and admins.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import Gallery, thread_gallery
from tests.test_runs_api import BASE_ARGS, RECORDING, app_notebook, publish, wait_run

pytestmark = pytest.mark.kernel

RUN_TIMEOUT = 240.0  # a run with its PDF on a loaded 2-core machine


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[Gallery]:
    args = [a for a in BASE_ARGS if "run_pdf" not in a] + ["--NbappsServer.run_workers=2"]
    with thread_gallery(tmp_path_factory.mktemp("runs-ui"), args=args) as g:
        publish(g, "sales", app_notebook([RECORDING]))  # analyst: ana
        publish(g, "broken", app_notebook(["raise ValueError('secret-table ' + label)"]))
        yield g


@pytest.fixture(scope="module")
def failing_run(gallery) -> dict[str, Any]:
    """A failed run of "broken" owned by alf (an analyst, but not this app's)."""
    with gallery.client("alf") as c:
        (queued,) = c.post("/api/apps/broken/runs", json={"parameters": {}}).json()["runs"]
        run = wait_run(c, queued["id"], timeout=RUN_TIMEOUT)
    assert run["state"] == "failed", run
    return run


def test_a_viewer_who_does_not_own_a_failing_run_sees_no_findings(gallery, failing_run):
    run_id = failing_run["id"]
    for who, sees in (("vic", False), ("alf", True), ("ana", True), ("rita", True),
                      ("adam", True)):
        with gallery.client(who) as c:
            one = c.get(f"/api/runs/{run_id}").json()
            (listed,) = [r for r in c.get("/api/apps/broken/runs").json()["items"]
                         if r["id"] == run_id]
        for body in (one, listed):
            assert body["state"] == "failed" and body["findings_hidden"] is (not sees), who
            text = str(body["findings"]) + str(body["details"])
            assert ("secret-table x" in text) is sees, (who, body)
            if not sees:
                assert body["findings"] == [] and body["details"] == {}
                # what everyone sees: not the executed notebook (the app's code, the traceback)
                assert body["parameters"] == {} and body["finished_at"]
                assert set(body["artifact_urls"]) == \
                    set(failing_run["artifact_urls"]) - {"executed.ipynb"}
                assert "executed.ipynb" not in body["artifacts"]
            else:
                assert body["artifact_urls"] == failing_run["artifact_urls"]
        with gallery.client(who) as c:
            executed = c.get(f"/api/runs/{run_id}/executed.ipynb")
            report = c.get(f"/api/runs/{run_id}/report.html")
        assert executed.status_code == (200 if sees else 403), (who, executed.text)
        assert ("secret-table x" in executed.text) is sees
        if not sees:
            assert executed.json()["error"] == "NBA301"
        assert report.status_code == 200 and "secret-table" not in report.text
    # the app page's recent runs: the same rule
    for who, sees in (("vic", False), ("alf", True), ("rita", True)):
        with gallery.browser(who) as b:
            page = b.get("/app/broken").text
        row = page[page.index(f'data-run="{run_id}"'):]
        row = row[:row.index("</tr>")]
        assert "failed" in row and "alf" in row
        assert ("secret-table x" in row) is sees, (who, row)
        assert ("secret-table" in page) is sees


def test_the_app_page_shows_the_report_control_and_recent_runs(gallery):
    with gallery.client("vic") as c:
        (queued,) = c.post("/api/apps/sales/runs", json={"parameters": {"n": 2}}).json()["runs"]
        run = wait_run(c, queued["id"], timeout=RUN_TIMEOUT)
    assert run["state"] == "passed", run
    with gallery.browser("vic") as b:
        page = b.get("/app/sales").text
    assert 'id="run-report"' in page and "Download report" in page
    assert re.search(r'data-runs-url="[^"]*/api/apps/sales/runs"', page)
    assert 'data-form="form.param-form"' in page and "/static/app_runs.js" in page
    assert 'name="_xsrf"' in page
    assert "Recent runs" in page
    row = page[page.index(f'data-run="{run["id"]}"'):]
    row = row[:row.index("</tr>")]
    assert "vic" in row and "api" in row and "passed" in row and "n=2" in row
    assert f'/api/runs/{run["id"]}/report.html?download=1' in row
    assert f'/api/runs/{run["id"]}/report.pdf?download=1' in row
    with gallery.browser("vic") as b:
        frame = b.get("/app/sales/open").text
    assert 'id="report-pdf"' in frame and 'data-fetch="report.pdf"' in frame
    assert "Download HTML" in frame  # the client-side download stays


def _login(page: Any, g: Gallery, who: str) -> None:
    page.goto(g.url + "/login")
    page.fill("#username", who)
    page.fill("#password", g.users[who].password)
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert "/login" not in page.url, page.url


#: records every text the run status elements show (the progress is over in seconds)
RECORD_STATUS = """
new MutationObserver(() => {
  for (const id of ["run-report-status", "run-status"]) {
    const el = document.getElementById(id);
    if (el && el.textContent && (window.__runTexts = window.__runTexts || [])
        .slice(-1)[0] !== el.textContent) window.__runTexts.push(el.textContent);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.mark.browser
def test_a_viewer_downloads_the_report_from_the_app_page_and_the_frame(gallery):
    with launched_chromium() as browser:
        context = browser.new_context(accept_downloads=True)
        context.add_init_script(RECORD_STATUS)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        _login(page, gallery, "vic")

        # the app page: Download report with the form's values
        page.goto(gallery.url + "/app/sales")
        page.fill("#p-n", "2.5")  # refused before anything is queued: the API's message
        page.click("#run-report")
        bad = page.wait_for_selector("#run-report-status.error")
        assert "parameter 'n'" in bad.inner_text()
        page.fill("#p-n", "5")
        page.select_option("#p-label", "y")
        page.click("#run-report")
        page.wait_for_selector("#run-report-status progress")
        pdf_link = page.wait_for_selector('#run-report-status a[data-artifact="report.pdf"]',
                                          timeout=RUN_TIMEOUT * 1000)
        texts = page.evaluate("window.__runTexts")
        assert any(t.startswith(("Queued", "Running")) for t in texts), texts
        assert texts[-1].startswith("Report ready"), texts
        with page.expect_download() as html_download:
            page.click('#run-report-status a[data-artifact="report.html"]')
        html = Path(html_download.value.path()).read_text(encoding="utf-8")
        assert "<h1>Sales</h1>" in html and "label = 'y'" in html
        with page.expect_download() as pdf_download:
            pdf_link.click()
        assert Path(pdf_download.value.path()).read_bytes()[:5] == b"%PDF-"
        assert pdf_download.value.suggested_filename == "report.pdf"
        # the recent runs list (now with rows) still fits a phone
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        assert page.locator("#runs tr[data-run]").count() >= 1
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        # the frame: Report (PDF) with a changed value in the parameter bar
        page.goto(gallery.url + "/app/sales/open")
        page.click(".app-params summary")
        page.fill(".param-row #p-n", "6")
        with page.expect_download(timeout=RUN_TIMEOUT * 1000) as frame_download:
            page.click("#report-pdf")
        assert Path(frame_download.value.path()).read_bytes()[:5] == b"%PDF-"
        assert page.locator('#run-status a[data-artifact="report.pdf"]').count() == 1
        assert any(t.startswith(("Queued", "Running"))
                   for t in page.evaluate("window.__runTexts"))
        assert errors == []
        context.close()
    with gallery.client("vic") as c:
        newest = c.get("/api/apps/sales/runs", params={"limit": 1}).json()["items"][0]
    assert (newest["owner"], newest["state"], newest["parameters"]) == \
        ("vic", "passed", {"n": 6, "label": "x"})
