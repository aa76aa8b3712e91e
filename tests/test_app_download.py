"""The app frame's "Download HTML" in real Chromium: what a viewer sees, kept as one file.

The frame (gallery origin) asks the sandboxed app page (opaque origin) for a snapshot by
postMessage and offers a file built from the answer (``static/app_frame.js`` and the nbapps Voilà
template). The test moves a slider, adds hostile markup to the app's page, downloads, checks
the file (the moved value's output and widget state in it, no gallery cookie, no app ticket, no
script or handler but the widget data and the gallery's widget bundle), sees an oversized and a
missing answer refused with a message, then opens the file from disk in a fresh browser
context and sees the widgets render there from the saved state (and, without the gallery's
widget bundle, the static copy of what the viewer saw).
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from tests.chromium import launched_chromium
from tests.server_harness import Gallery
from tests.test_app_browser import (
    ARTIFACTS,
    VIEWER,
    _loan_gallery,
    _login,
    _wait_app_rendered,
    app_view,
    step_term_slider,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

STATE_MIME = "application/vnd.jupyter.widget-state+json"
VIEW_MIME = "application/vnd.jupyter.widget-view+json"

#: what a hostile app could add to its page: script, an inline handler, a javascript: link
HOSTILE_OUTPUT = """() => {
  const box = document.createElement("div");
  box.innerHTML = '<p>hostile output</p><img src="data:," onerror="alert(1)">' +
    '<a href="javascript:alert(2)">link</a><svg><script>alert(3)</script></svg>';
  const script = document.createElement("script");
  script.textContent = "window.evilRan = 1";
  box.appendChild(script);
  document.getElementById("rendered_cells").appendChild(box);
}"""
#: an app whose answer is too large (25 MB), then never comes
HOSTILE_ANSWERS = """() => {
  const manager = window.jupyterapp.widgetManager;
  let n = 0;
  manager.get_state = () => n++ === 0
    ? Promise.resolve({version_major: 2, version_minor: 0, state: {},
                       padding: "x".repeat(25 * 1024 * 1024)})
    : new Promise(() => {});
}"""


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[tuple[Gallery, str]]:
    with _loan_gallery(tmp_path_factory.mktemp("app-download")) as served:
        yield served


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


class _Scripts(HTMLParser):
    """Every ``<script>`` of a document: its attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [name for name, _ in attrs if name.lower().startswith("on")]
        if tag == "script":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._open is not None:
            self.scripts.append((self._open, "".join(self._text)))
            self._open = None


def test_download_keeps_the_current_result_and_renders_offline(gallery, chromium, tmp_path):
    g, slug = gallery
    context = chromium.new_context(viewport={"width": 1280, "height": 800},
                                   accept_downloads=True)
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        _login(page, g, VIEWER)
        page.goto(f"{g.url}/app/{slug}/open")
        _wait_app_rendered(page)
        step_term_slider(page)  # 25 → 26 years: the what-if output says 312 months
        ticket = re.search(r"/~t/([^/?#]+)/", page.get_attribute("#app-view", "src") or "")
        assert ticket, "the app's iframe URL has no ticket"
        button = page.locator("#download")
        assert button.is_visible() and button.is_enabled()
        # app code is untrusted: what it puts on its page is data in the file, never script
        app_view(page).evaluate(HOSTILE_OUTPUT)
        with page.expect_download() as info:
            button.click()
        download = info.value
        page.wait_for_selector("#copy-status:has-text('Saved')")
        downloads: list[Any] = []
        page.on("download", lambda d: downloads.append(d))
        # an app that answers too much, then not at all: a clear message, no file
        app_view(page).evaluate(HOSTILE_ANSWERS)
        button.click()
        page.wait_for_selector("#copy-status.error:has-text('too large')")
        button.click()
        page.wait_for_selector("#copy-status.error:has-text('did not answer')", timeout=20_000)
        assert button.is_enabled() and not downloads
        assert re.fullmatch(rf"{re.escape(slug)}-\d{{8}}-\d{{4}}\.html",
                            download.suggested_filename), download.suggested_filename
        saved = tmp_path / download.suggested_filename
        download.save_as(saved)
        text = saved.read_text("utf-8")
        cookies = context.cookies(g.url)
    finally:
        context.close()

    # what it holds: the title, the link with the parameters, the outputs and the moved state
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    assert title and title.group(1).strip(), "no title"
    assert f"{g.url}/app/{slug}/open" in text
    parser = _Scripts()
    parser.feed(text)
    states = [body for attrs, body in parser.scripts if attrs.get("type") == STATE_MIME]
    assert len(states) == 1, "one widget state"
    state = json.loads(states[0])["state"]
    terms = [m["state"] for m in state.values()
             if m["state"].get("description") == "Term (years)"]
    assert terms and terms[0]["value"] == 26, terms
    assert "312" in json.dumps(state), "the what-if output of the moved slider is not saved"
    assert "Monthly payment" in text  # a rendered (non-widget) output of the app
    assert "hostile output" in text
    for needle in ("onerror", "javascript:", "alert(", "evilRan"):
        assert needle not in text, needle
    views = [json.loads(body)["model_id"] for attrs, body in parser.scripts
             if attrs.get("type") == VIEW_MIME]
    assert views and all(v in state for v in views), views
    # no script but the widget data and the gallery's bundle; no inline handler
    others = [attrs for attrs, _ in parser.scripts
              if attrs.get("type") not in (STATE_MIME, VIEW_MIME)]
    assert others == [{"src": others[0].get("src")}] and \
        others[0]["src"].startswith(f"{g.url}/static/widgets/embed.js"), others
    assert not parser.handlers, parser.handlers
    assert "Content-Security-Policy" in text
    # nothing that authorises anything: no gallery cookie value, no app ticket
    secrets = [c["value"] for c in cookies if len(c["value"]) >= 8]
    assert secrets, "the viewer's session cookie was expected"
    assert not [s for s in secrets if s in text], "a gallery cookie value is in the file"
    assert ticket.group(1) not in text, "the app ticket is in the file"

    # opened later from disk (no session): the widgets render from the saved state, static
    offline = chromium.new_context(viewport={"width": 1280, "height": 800})
    offline.set_default_timeout(60_000)
    try:
        view = offline.new_page()
        errors: list[str] = []
        view.on("pageerror", lambda err: errors.append(str(err)))
        view.goto(saved.as_uri())
        rendered = view.locator(".widget-subarea")
        rendered.locator(".widget-slider .noUi-handle").first.wait_for()
        term = rendered.locator(".widget-slider").filter(has_text="Term (years)")
        assert term.locator(".widget-readout").inner_text().strip() == "26"
        rendered.locator(".widget-output table").first.wait_for()
        assert view.locator(".nbapps-fallback:visible").count() == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=str(ARTIFACTS / "download-01-saved.png"), full_page=True)
        (ARTIFACTS / "download-01-saved.html").write_text(text, "utf-8")
        assert not errors, errors
        # without the gallery's widget bundle: the static copy of what the viewer saw
        view.route("**/static/widgets/embed.js*", lambda route: route.abort())
        view.reload()
        view.locator(".nbapps-fallback table").filter(has_text="312").wait_for()
        assert view.locator(".widget-subarea").count() == 0
        view.screenshot(path=str(ARTIFACTS / "download-02-no-bundle.png"), full_page=True)
    finally:
        offline.close()
