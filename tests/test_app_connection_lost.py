"""An open app page whose kernel connection is lost says so and offers a reload.

Voilà retries a lost kernel socket with a growing delay and shows nothing: the widgets just stop
answering. The nbapps page template (``nbapps/runner/share/voila/templates/nbapps``) asks the
proxy about its kernel after a short grace and shows what happened, with a *Reload the app*
button. Real gallery, real runner and kernels, Chromium: the runner is killed (a crash, a
version switch or a culled kernel look the same to the page), then the viewer's session ends.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import Gallery
from tests.test_app_browser import (
    _loan_gallery,
    _login,
    _new_page,
    _wait_app_rendered,
    app_view,
    step_term_slider,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

BANNER = "#nbapps-connection"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[tuple[Gallery, str]]:
    with _loan_gallery(tmp_path_factory.mktemp("connection-lost")) as served:
        yield served


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _runner_pid(g: Gallery, slug: str) -> int:
    runner = g.server.server.live_sync.ctx.runtime.runner_for(slug)
    assert runner is not None, "the app has no live runner"
    return int(runner.pid)


@contextmanager
def _open_app(chromium: Any, g: Gallery, slug: str) -> Iterator[tuple[Any, Any]]:
    """(context, page) of ``vic`` with the app open in its frame, closed on exit."""
    context, page = _new_page(chromium)
    try:
        _login(page, g, "vic")
        page.goto(f"{g.url}/app/{slug}/open")
        _wait_app_rendered(page)
        yield context, page
    finally:
        context.close()


def test_a_stopped_runner_is_shown_and_reload_brings_the_app_back(gallery, chromium):
    g, slug = gallery
    with _open_app(chromium, g, slug) as (_, page):
        step_term_slider(page)  # connected: the kernel answers
        assert app_view(page).locator(BANNER).count() == 0

        os.kill(_runner_pid(g, slug), signal.SIGKILL)
        banner = app_view(page).locator(f"{BANNER}[data-state=gone]")
        banner.wait_for(timeout=30_000)
        assert "stopped or updated" in banner.inner_text()
        banner.get_by_role("button", name="Reload the app").click()
        _wait_app_rendered(page)  # a new page, on the restarted runner
        step_term_slider(page)
        assert app_view(page).locator(BANNER).count() == 0


def test_an_ended_session_is_shown_without_a_retry_loop(gallery, chromium):
    """Signing out in another tab closes the app's socket (1008): the page says the access has
    ended (its kernel answers 403 to the ended ticket) instead of retrying forever."""
    g, slug = gallery
    with _open_app(chromium, g, slug) as (context, page):
        other = context.new_page()
        other.goto(f"{g.url}/")
        other.locator('form[action$="/logout"] button').click()
        other.wait_for_selector("#logged-out")
        banner = app_view(page).locator(f"{BANNER}[data-state=ended]")
        banner.wait_for(timeout=30_000)
        assert "access to this app has ended" in banner.inner_text()
