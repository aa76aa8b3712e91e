"""Live previews of submitted versions for reviewers (issue 10, point 3), with real runners.

A gallery serving apps (a thread, real Voilà runners) has version 1 of an app approved live and
version 2 submitted and checked by the gallery. A reviewer opens version 2's live preview: the
submitted source runs (its own widget output), behind the same ticket, CSP sandbox and
parameter checks as a live app, under the key ``~v<id>`` that never touches the live runner.
Viewers, other analysts and anonymous users cannot open it; its author can. After the reviewer's
decision the preview runner is stopped and its URLs answer 410 (NBA360) while the live app keeps
serving version 1.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import nbformat
import psutil
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from nbapps.runner.notebook_variants import DEFAULT_NAME
from nbapps.server.app_isolation import APP_PAGE_CSP
from tests.nbfactory import make_notebook
from tests.server_harness import Gallery, build_archive, wait_checked
from tests.test_app_browser import _approve_api, _submit, serving_gallery

pytestmark = [pytest.mark.kernel]

LIVE_MARK, PREVIEW_MARK = "MARK-LIVE-V1", "MARK-PREVIEW-V2"
START_S = 180.0  # a runner start on a loaded 2-core machine
#: a slider whose label the kernel recomputes (a change shows only if the kernel answered)
WIDGET = (
    "import ipywidgets as w\n"
    "s = w.IntSlider(value=n, min=0, max=10, description=label)\n"
    "out = w.HTML(f'SQUARE {n * n}')\n"
    "s.observe(lambda c: setattr(out, 'value', f\"SQUARE {c['new'] ** 2}\"), names='value')\n"
    "w.VBox([s, out])"
)


def _notebook(marker: str) -> nbformat.NotebookNode:
    """A slider app whose last widget cell shows ``marker`` (an HTML output of the run)."""
    nb = make_notebook(meta={"title": "Preview me"}, widget=WIDGET)
    nb.cells.append(nbformat.v4.new_code_cell(
        f"from IPython.display import HTML\nHTML('<p>{marker} ' + str(n * n) + '</p>')",
        metadata={"tags": ["widget"]}))
    return nb


@pytest.fixture(scope="module")
def preview_gallery(tmp_path_factory) -> Iterator[tuple[Gallery, str, int]]:
    """(gallery, slug, id of version 2): version 1 live, version 2 submitted and checked."""
    base: Path = tmp_path_factory.mktemp("preview")
    with serving_gallery(base) as g:
        v1 = _submit(g, build_archive(base / "v1", _notebook(LIVE_MARK)))
        _approve_api(g, v1["id"])
        v2 = _submit(g, build_archive(base / "v2", _notebook(PREVIEW_MARK)))
        assert v2["slug"] == v1["slug"]
        sub = wait_checked(g, v2["id"], who="rita")
        assert sub["state"] == "submitted" and sub["check"]["state"] == "passed", sub
        yield g, v1["slug"], int(v2["id"])


def _frame_src(b: Any, path: str) -> str:
    frame = b.get(path)
    assert frame.status_code == 200, frame.text[:500]
    m = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text)
    assert m, "no iframe in the frame page"
    return m.group(1).replace("&amp;", "&")


def _page(g: Gallery, src: str) -> httpx.Response:
    """The app page at a ticket URL once its runner is up (the proxy holds it while it
    starts, then shows its waiting page: ask again until the deadline)."""
    deadline = time.monotonic() + START_S
    with httpx.Client(base_url=g.url, timeout=120) as c:
        while True:
            r = c.get(src)
            if r.status_code != 503 or time.monotonic() > deadline:
                return r
            time.sleep(0.5)  # the waiting page's own Retry-After is seconds


def _runners(g: Gallery) -> list[dict[str, Any]]:
    state = json.loads((g.data_dir / "runtime" / "supervisor.json").read_text())
    return list(state["runners"])


def _in_thread(coro: Any) -> Any:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(120)


async def _connect(ws_url: str) -> int:
    try:
        conn = await websocket_connect(HTTPRequest(ws_url, headers={"Origin": "null"}))
    except HTTPClientError as exc:
        return exc.code
    conn.close()
    return 101


def test_a_reviewer_opens_the_live_preview_of_a_submitted_version(preview_gallery):
    g, slug, vid = preview_gallery
    key = f"~v{vid}"
    with g.browser("rita") as b:
        sub = b.get(f"/submissions/{vid}")
        assert sub.status_code == 200
        assert "Open live preview" in sub.text and f'href="/submissions/{vid}/preview"' in sub.text
        frame = b.get(f"/submissions/{vid}/preview")
        assert "Preview of version 2 — not approved" in frame.text
        src = _frame_src(b, f"/submissions/{vid}/preview")
    assert re.fullmatch(rf"/apps/{re.escape(key)}/~t/[A-Za-z0-9_.-]+/", src), src

    with g.client("rita") as c:  # the first page request starts it (a script is not held)
        first = c.get(f"/apps/{key}/")
    assert first.status_code == 503, first.text[:300]
    assert "Starting Preview of Preview me (version 2)" in first.text
    page = _page(g, src)  # the ticket is the only credential: no cookie, no token
    assert page.status_code == 200, page.text[:500]
    # the submitted source ran (its output, not its code) and nothing of the live version
    assert f"{PREVIEW_MARK} 9" in page.text and LIVE_MARK not in page.text
    assert page.headers["content-security-policy"] == APP_PAGE_CSP  # same isolation as apps
    assert f'"baseUrl": "{src}"' in page.text
    preview_runner = next(r for r in _runners(g) if r["slug"] == key)
    # a preview preheats one page (refilled after this one took it), not a live app's pools
    status_file = Path(preview_runner["dir"]) / "status.json"
    deadline = time.monotonic() + START_S
    while True:
        pools = json.loads(status_file.read_text())["pools"]
        sizes = {name: pool["size"] for name, pool in pools.items() if pool["size"]}
        if sizes or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # polling the runner's status file (rewritten as kernels change)
    assert sizes == {DEFAULT_NAME: 1}, pools

    kid = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page.text).group(1)
    ws = g.url.replace("http", "ws", 1)
    assert _in_thread(_connect(f"{ws}{src}api/kernels/{kid}/channels?session_id=t")) == 101

    with httpx.Client(base_url=g.url, timeout=60) as c:  # the version's contract is checked
        assert c.get(f"{src}?n=abc").status_code == 400
        assert c.get(f"{src}?bogus=1").status_code == 400
    custom = _page(g, f"{src}?n=4")
    assert custom.status_code == 200 and f"{PREVIEW_MARK} 16" in custom.text

    # the live app of the same slug is a different runner, still serving version 1
    with g.browser("vic") as b:
        live_src = _frame_src(b, f"/app/{slug}/open")
    live = _page(g, live_src)
    assert live.status_code == 200 and LIVE_MARK in live.text and PREVIEW_MARK not in live.text
    slugs = {r["slug"] for r in _runners(g)}
    assert {slug, key} <= slugs


@pytest.mark.browser
def test_the_preview_runs_its_widgets_in_chromium(preview_gallery, tmp_path):
    """The reviewer's way in: the submission page's button, the banner, a working widget."""
    from tests.chromium import launched_chromium
    from tests.test_app_browser import RUNNER_START_MS, _login, _new_page, app_view

    g, _, vid = preview_gallery
    with launched_chromium() as browser:
        context, page = _new_page(browser)
        try:
            _login(page, g, "rita")
            page.goto(f"{g.url}/submissions/{vid}")
            href = page.get_attribute("#open-preview", "href")
            page.goto(f"{g.url}{href}")
            banner = page.locator("#preview-banner").text_content()
            assert "Preview of version 2" in banner and "not approved" in banner
            view = app_view(page)
            view.wait_for_selector(".widget-slider .noUi-handle", timeout=RUNNER_START_MS)
            view.wait_for_selector(f"text={PREVIEW_MARK} 9", timeout=RUNNER_START_MS)
            # the preview's kernel answers the widget: a slider step recomputes the label
            view.wait_for_selector("text=SQUARE 9")
            view.locator(".widget-slider .noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            view.wait_for_selector("text=SQUARE 16")
            page.screenshot(path=str(tmp_path / "preview.png"))
        finally:
            context.close()


def test_only_reviewers_and_the_author_can_open_a_preview(preview_gallery):
    g, slug, vid = preview_gallery
    key = f"~v{vid}"
    for who in ("vic", "alf"):  # a viewer, another analyst
        with g.browser(who) as b:
            assert b.get(f"/submissions/{vid}/preview").status_code == 403, who
        with g.client(who) as c:
            for path in (f"/apps/{key}/", f"/apps/{key}/voila/static/voila.js"):
                assert c.get(path).status_code == 403, (who, path)
    with g.browser(None) as anonymous:
        r = anonymous.get(f"/submissions/{vid}/preview")
        assert r.status_code == 302 and "/login" in r.headers["location"]
        assert anonymous.get(f"/apps/{key}/voila/static/voila.js").status_code in (302, 403)
    with g.browser("rita") as b:  # a browser opening the preview's URL gets its frame page
        r = b.get(f"/apps/{key}/?n=2", headers={"Accept": "text/html"})
        assert r.status_code == 302 and r.headers["location"] == f"/submissions/{vid}/preview?n=2"
    with g.browser("ana") as author:  # the submitter
        src = _frame_src(author, f"/submissions/{vid}/preview")
        assert "Open live preview" in author.get(f"/submissions/{vid}").text
    with httpx.Client(base_url=g.url, timeout=60) as c:
        assert c.get(f"{src}voila/static/voila.js").status_code == 200
        # a ticket names one key: the author's preview ticket opens neither the live app nor
        # another version's preview, and a live app's ticket does not open the preview
        token = src.split("/~t/")[1].rstrip("/")
        assert c.get(f"/apps/{slug}/~t/{token}/voila/static/voila.js").status_code == 403
        assert c.get(f"/apps/~v{vid + 1}/~t/{token}/voila/static/voila.js").status_code == 403
    with g.browser("vic") as b:
        live_token = _frame_src(b, f"/app/{slug}/open").split("/~t/")[1].rstrip("/")
    with httpx.Client(base_url=g.url, timeout=60) as c:
        assert c.get(f"/apps/{key}/~t/{live_token}/voila/static/voila.js").status_code == 403


def test_the_decision_stops_the_preview(preview_gallery):
    g, slug, vid = preview_gallery
    key = f"~v{vid}"
    with g.browser("rita") as b:
        src = _frame_src(b, f"/submissions/{vid}/preview")
    assert _page(g, src).status_code == 200
    pids = [r["pid"] for r in _runners(g) if r["slug"] == key]
    assert pids
    with g.client("rob") as c:
        r = c.post(f"/api/submissions/{vid}/decision",
                   json={"decision": "reject", "comment": "not like this"})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while any(r["slug"] == key for r in _runners(g)) or any(
            psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
            for p in pids):
        assert time.monotonic() < deadline, "the preview runner still runs after the decision"
        time.sleep(0.2)  # polling the supervisor's state file (written when runners change)

    with httpx.Client(base_url=g.url, timeout=60) as c:
        ended = c.get(src)
        assert ended.status_code == 410 and "NBA360" in ended.text
        assert "has ended" in ended.text and "rejected" in ended.text
        assert c.get(f"{src}voila/static/voila.js").status_code == 410
    with g.browser("rita") as b:
        assert b.get(f"/submissions/{vid}/preview").status_code == 410
        assert "Open live preview" not in b.get(f"/submissions/{vid}").text
    assert not any(r["slug"] == key for r in _runners(g))  # the URL did not start it again

    with g.browser("vic") as b:  # the live app is unaffected
        live = _page(g, _frame_src(b, f"/app/{slug}/open"))
    assert live.status_code == 200 and LIVE_MARK in live.text


def test_an_idle_preview_stops(tmp_path):
    """The supervisor's idle timeout applies to previews like to apps (here 2 s)."""
    with serving_gallery(tmp_path, ["--RuntimeConfiguration.idle_timeout=2"]) as g:
        v = _submit(g, build_archive(tmp_path / "v", _notebook(PREVIEW_MARK)))
        assert wait_checked(g, v["id"], who="rita")["state"] == "submitted"
        key = f"~v{v['id']}"
        with g.browser("rita") as b:
            src = _frame_src(b, f"/submissions/{v['id']}/preview")
        assert _page(g, src).status_code == 200
        assert any(r["slug"] == key for r in _runners(g))
        deadline = time.monotonic() + 60
        while any(r["slug"] == key for r in _runners(g)):
            assert time.monotonic() < deadline, "the idle preview runner was not stopped"
            time.sleep(0.2)  # polling the supervisor's state file
