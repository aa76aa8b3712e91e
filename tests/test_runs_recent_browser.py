"""The app page's *Recent runs* refresh themselves (static/app_runs.js) while a run is queued or
running: a run goes from running to passed, with its downloads, in real Chromium without a
reload. A real gallery (thread), real kernels."""
from __future__ import annotations

import time

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import thread_gallery
from tests.test_runs_api import BASE_ARGS, app_notebook, publish
from tests.test_runs_ui import _login

pytestmark = [pytest.mark.kernel, pytest.mark.browser]

#: long enough to load the page while the run is on
SLOW_CELL = "import time\ntime.sleep(6)"


def test_recent_runs_follow_a_run_to_its_end_without_a_reload(tmp_path):
    args = [a for a in BASE_ARGS if "run_pdf" not in a] + ["--NbappsServer.run_workers=1"]
    with thread_gallery(tmp_path, args=args) as g:
        publish(g, "slow", app_notebook([SLOW_CELL]))
        with g.client("vic") as c:
            (queued,) = c.post("/api/apps/slow/runs", json={"parameters": {"n": 4}}
                               ).json()["runs"]
            run_id = queued["id"]
            deadline = time.monotonic() + 120
            while c.get(f"/api/runs/{run_id}").json()["state"] == "queued":
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.1)
        with launched_chromium() as browser:
            page = browser.new_context().new_page()
            polls: list[str] = []
            page.on("request", lambda r: polls.append(r.url)
                    if "/api/apps/slow/runs?limit=" in r.url else None)
            _login(page, g, "vic")
            page.goto(g.url + "/app/slow")
            row = f'#runs tr[data-run="{run_id}"]'
            state = page.locator(f"{row} .state").text_content()
            assert state in ("queued", "running"), state  # the page was rendered meanwhile
            assert page.locator(f"{row} a").count() == 0  # no downloads yet
            page.evaluate("() => { window.__sameDocument = true; }")

            page.wait_for_function(
                "sel => (document.querySelector(sel) || {}).textContent === 'passed'",
                arg=f"{row} .state", timeout=120_000, polling=100)
            assert page.evaluate("() => window.__sameDocument === true")  # no reload
            links = page.locator(f"{row} a")
            assert links.all_text_contents() == ["HTML", "PDF"]
            hrefs = [links.nth(i).get_attribute("href") for i in range(2)]
            assert hrefs[0].endswith(f"/api/runs/{run_id}/report.html?download=1")
            assert hrefs[1].endswith(f"/api/runs/{run_id}/report.pdf?download=1")
            assert page.locator(f"{row} .small.muted").last.text_content().endswith(" s")
            assert polls, "the list did not poll"
