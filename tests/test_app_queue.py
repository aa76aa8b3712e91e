"""Issue 12.2-12.3 with the real gallery, runner and Chromium: a viewer of a full app waits in
its queue with their place, advances by themselves and gets the app when a kernel is free; a
viewer who leaves gives their place up; one account holds at most three kernels of an app."""
from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chromium import launched_chromium
from tests.test_app_browser import (
    RUNNER_START_MS,
    _loan_gallery,
    _login,
    _new_page,
    _wait_app_rendered,
    app_view,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

KERNEL_IN_PAGE = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _queue_place(page: Any, place: int) -> None:
    app_view(page).wait_for_selector(f"h1:has-text('You are number {place} in the queue')",
                                     timeout=RUNNER_START_MS)


def test_a_viewer_waits_in_the_queue_then_gets_the_app(tmp_path, chromium):
    args = ["--RuntimeConfiguration.max_kernels_per_app=1",
            "--RuntimeConfiguration.queue_patience=6"]
    with _loan_gallery(tmp_path, args) as (g, slug):
        pages = {}
        for who in ("vic", "rita", "ana"):
            context, page = _new_page(chromium)
            _login(page, g, who)
            pages[who] = (context, page)
        first, second, third = (pages[w][1] for w in ("vic", "rita", "ana"))
        first.goto(f"{g.url}/app/{slug}/open")
        _wait_app_rendered(first)
        second.goto(f"{g.url}/app/{slug}/open")
        _queue_place(second, 1)
        third.goto(f"{g.url}/app/{slug}/open")
        _queue_place(third, 2)
        _queue_place(second, 1)  # its page reloaded by itself and kept the place
        assert "Keep this page open" in app_view(second).inner_text("body")
        # the first viewer leaves (their page's unload beacon ends their kernel): the second
        # gets the app by itself, the third moves up
        first.goto("about:blank")
        _wait_app_rendered(second)
        _queue_place(third, 1)
        # the third leaves: their place is given up (nobody waits any more)
        pages["ana"][0].close()
        with g.browser("vic") as api:
            deadline = time.monotonic() + 30
            status: dict[str, Any] = {}
            while time.monotonic() < deadline:
                status = api.get(f"/api/apps/{slug}/status").json()
                if status["state"] != "busy":
                    break
                time.sleep(0.5)
        assert status["state"] == "ready", status
        for who in ("vic", "rita"):
            pages[who][0].close()


def test_one_account_holds_at_most_three_kernels_of_an_app(tmp_path):
    with _loan_gallery(tmp_path) as (g, slug), g.browser("vic") as vic, \
            g.browser("rita") as rita:
        deadline = time.monotonic() + RUNNER_START_MS / 1000
        while (vic.get(f"/api/apps/{slug}/status").json()["state"] != "ready"
               and time.monotonic() < deadline):
            rita.get(f"/apps/{slug}/")  # a page request starts the runner (not vic: counted)
            time.sleep(1)
        kernels = []
        for _ in range(3):  # a script that only GETs the app page (never connects)
            r = vic.get(f"/apps/{slug}/", timeout=120)
            assert r.status_code == 200, r.text[:300]
            kernels.append(KERNEL_IN_PAGE.search(r.text).group(1))
        fourth = vic.get(f"/apps/{slug}/", timeout=120)
        assert fourth.status_code == 503 and int(fourth.headers["Retry-After"]) > 0
        assert "You have 3 pages of this app open already" in fourth.text
        # everyone else is still served
        assert rita.get(f"/apps/{slug}/", timeout=120).status_code == 200
        # closing one page (Voilà's unload beacon) frees one kernel for its viewer
        closed = vic.post_form(f"/apps/{slug}/voila/api/shutdown/{kernels[0]}",
                               headers={"Origin": g.url})
        assert closed.status_code < 400, closed.text[:300]
        again = vic.get(f"/apps/{slug}/", timeout=120)
        assert again.status_code == 200, again.text[:300]
        assert vic.get(f"/apps/{slug}/", timeout=120).status_code == 503
