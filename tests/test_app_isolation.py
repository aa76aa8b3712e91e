"""App code cannot act as its viewers (issue 10, DESIGN.md decision 8), in real Chromium.

An approved app whose markdown, HTML output, ``Javascript()`` output and SVG file all run an
attack (:mod:`tests.app_attacks`) is opened by an admin. Every attack tries to read the gallery's
cookies, call ``/api/me`` with credentials, make its author an admin and create a token as the
viewer, with and without an XSRF value it can find; all of it fails, the server's state does not
change, and the app itself still works (a slider step changes its output). The same attack code
run on the gallery's own origin succeeds: that is the control showing the attack is real.

Also without a browser: the headers of every kind of app response, the cookie flags, the
gallery refusing its session from app and cross-site contexts, tickets, and 404s for missing
apps for everyone.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.app_attacks import ATTACK_JS, SVG_NAME, VECTORS, attack_notebook, svg_file
from tests.chromium import launched_chromium
from tests.server_harness import Gallery, build_archive
from tests.test_app_browser import (
    RUNNER_START_MS,
    _approve_api,
    _login,
    _new_page,
    _submit,
    app_view,
    serving_gallery,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel]

VICTIM = "ana"  # the attacker: the app's author, trying to become admin
VIEWER = "adam"  # an admin opens the app


@pytest.fixture(scope="module")
def attack_gallery(tmp_path_factory) -> Iterator[tuple[Gallery, str, str]]:
    """A gallery serving apps, with the attacking app approved live: (gallery, slug, the
    author's own XSRF value baked into the app)."""
    base = tmp_path_factory.mktemp("isolation")
    with serving_gallery(base) as g:
        with g.browser(VICTIM) as author:
            baked = author.xsrf()
        folder = base / "attack"
        folder.mkdir()
        (folder / SVG_NAME).write_bytes(svg_file())
        sub = _submit(g, build_archive(folder, attack_notebook(VICTIM, baked)))
        _approve_api(g, sub["id"])
        yield g, sub["slug"], baked


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _server_state(g: Gallery) -> tuple[str, list[str]]:
    """(the attacker's role, the labels of the viewer's API tokens)."""
    with g.client(VIEWER) as admin:
        role = admin.get(f"/api/users/{VICTIM}").json()["role"]
        body = admin.get("/api/me/tokens").json()
    items = body.get("items", body) if isinstance(body, dict) else body
    return role, sorted(str(t.get("label")) for t in items)


def _failed(result: dict[str, Any]) -> bool:
    """A fetch the attack made did not get through: a network/CORS error, or a refusal."""
    return "error" in result or result.get("status") not in (200, 201, 204, 302)


def test_app_code_cannot_act_as_its_viewer(attack_gallery, chromium):
    g, slug, baked = attack_gallery
    before = _server_state(g)
    assert before == ("analyst", ["tests"]), before
    context, page = _new_page(chromium)
    try:
        _login(page, g, VIEWER)
        page.goto(f"{g.url}/apps/{slug}/")
        page.wait_for_url(re.compile(rf"/app/{slug}/open"))
        view = app_view(page)
        view.wait_for_selector(".widget-slider .noUi-handle", timeout=RUNNER_START_MS)
        results = {}
        for vector in VECTORS:  # each one ran: the app's script is not blocked, only isolated
            view.wait_for_selector(f"#attack-{vector}", state="attached", timeout=120_000)
            results[vector] = json.loads(view.locator(f"#attack-{vector}").text_content())
        for vector, out in results.items():
            assert out["origin"] == "null", (vector, out["origin"])
            assert "nbapps-session" not in out["cookie"] and "xsrf" not in out["cookie"]
            assert out["parentCookie"].startswith("ERR") and out["topTitle"].startswith("ERR")
            assert VIEWER not in json.dumps(out["me"]) and _failed(out["me"]), out["me"]
            assert out["scraped"] in ("", "ERR TypeError"), out["scraped"]
            assert out["tried"] >= 2  # no XSRF value and the author's own, at least
            attempts = {k: v for k, v in out.items() if k.startswith(("token_", "role_"))}
            assert len(attempts) == 5 * out["tried"]
            assert all(_failed(v) for v in attempts.values()), (vector, attempts)

        # the SVG shipped with the app, embedded: as an image it shows (and never runs
        # script); as an object it is refused (object-src 'none'); in an iframe it is refused
        # too (its frame-ancestors 'self' does not match the app's opaque origin), and even
        # where it loads, its own sandbox has no allow-scripts
        assert view.locator("#svg-img").evaluate("img => img.complete && img.naturalWidth > 0")
        svg_frame = view.locator("#svg-iframe").element_handle().content_frame()
        if svg_frame is not None:
            svg_frame.wait_for_load_state("load")
            assert svg_frame.locator("svg[data-attack]").count() == 0

        # the app still works: a slider step makes the kernel recompute its output
        view.wait_for_selector("text=SQUARE 9")
        view.locator(".widget-slider .noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        view.wait_for_selector("text=SQUARE 16")

        # the SVG opened by itself, with the viewer's session (a top-level navigation) and
        # through the app's ticket: sandboxed without scripts
        ticket_base = page.get_attribute("#app-view", "src").split("?")[0]
        for url in (f"{g.url}/apps/{slug}/voila/files/{SVG_NAME}",
                    f"{g.url}{ticket_base}voila/files/{SVG_NAME}"):
            response = page.goto(url)
            assert response.status == 200 and "sandbox" in response.headers[
                "content-security-policy"]
            page.wait_for_load_state("load")
            assert page.locator("svg").get_attribute("data-attack") is None, url
            assert page.locator("svg").get_attribute("data-me") is None, url

        assert _server_state(g) == before

        # control: the same SVG and the same attack on an origin that is not sandboxed do
        # run and do succeed (so the checks above are not vacuous)
        page.goto("data:image/svg+xml;base64," + base64.b64encode(svg_file()).decode())
        page.wait_for_function("document.documentElement.getAttribute('data-attack')")
        page.goto(f"{g.url}/app/{slug}")
        control = page.evaluate(f"{ATTACK_JS}('control', '{VICTIM}', '{baked}')")
        assert VIEWER in control["me"]["body"] and control["scraped"], control
        assert any(not _failed(v) for k, v in control.items() if k.startswith("token_"))
        role, labels = _server_state(g)
        assert role == "admin" and any(label.startswith("pwned-control") for label in labels)
    finally:
        context.close()


# -- without a browser ------------------------------------------------------------------------

def _ticket_src(g: Gallery, who: str, slug: str) -> str:
    with g.browser(who) as b:
        frame = b.get(f"/app/{slug}/open")
    assert frame.status_code == 200, frame.text[:500]
    m = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text)
    assert m, "no app iframe in the frame page"
    return m.group(1).replace("&amp;", "&")


def test_every_app_response_is_sandboxed(attack_gallery):
    g, slug, _ = attack_gallery
    src = _ticket_src(g, VIEWER, slug)
    assert re.fullmatch(rf"/apps/{slug}/~t/[A-Za-z0-9_.-]+/", src), src
    with httpx.Client(base_url=g.url, timeout=120) as c:
        page = c.get(src)
        assert page.status_code == 200 and "jp-OutputArea" in page.text
        # the page's own URLs keep the ticket: assets, kernel and widget connection
        assert f'"baseUrl": "{src}"' in page.text
        assert not re.search(rf'(?:src|href)="/apps/{slug}/(?!~t/)', page.text)
        kid = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page.text).group(1)
        responses = {
            "page": page,
            "asset": c.get(f"{src}voila/static/voila.js"),
            "file": c.get(f"{src}voila/files/{SVG_NAME}"),
            "kernel": c.get(f"{src}api/kernels/{kid}"),
            "missing": c.get(f"{src}voila/tree"),
        }
    for kind, r in responses.items():
        csp = r.headers["content-security-policy"]
        assert re.match(r"sandbox\b", csp), (kind, csp)
        assert "allow-same-origin" not in csp, kind
        assert "frame-ancestors 'self'" in csp, kind
        assert r.headers["referrer-policy"] == "no-referrer", kind
        assert r.headers["access-control-allow-origin"] == "*", kind  # ticket, no credentials
        assert "access-control-allow-credentials" not in r.headers, kind
        assert "set-cookie" not in r.headers, kind
    assert "allow-scripts" in responses["page"].headers["content-security-policy"]
    for kind in ("asset", "file", "kernel"):
        assert "allow-scripts" not in responses[kind].headers["content-security-policy"], kind
    assert "script-src" not in responses["file"].headers["content-security-policy"]
    assert responses["missing"].status_code == 404


def test_tickets_are_checked(attack_gallery):
    g, slug, _ = attack_gallery
    src = _ticket_src(g, VIEWER, slug)
    token = src.split("/~t/")[1].rstrip("/")
    payload, mac = token.split(".")
    forged = base64.urlsafe_b64encode(
        base64.urlsafe_b64decode(payload + "==").replace(b'"adam"', b'"rita"')).decode()
    with httpx.Client(base_url=g.url, timeout=60) as c:
        assert c.get(f"{src}voila/static/voila.js").status_code == 200
        for bad in (f"{payload}.{'A' * len(mac)}", f"{forged.rstrip('=')}.{mac}", "x" * 40):
            r = c.get(f"/apps/{slug}/~t/{bad}/voila/static/voila.js")
            assert r.status_code == 403, bad
        # a ticket is for one app only
        r = c.get(f"/apps/other-app/~t/{token}/voila/static/voila.js")
        assert r.status_code == 403
    # the gallery itself never accepts a ticket as a credential
    with httpx.Client(base_url=g.url, timeout=60) as c:
        assert c.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_the_frame_polls_its_progress_on_the_ticket_path(attack_gallery):
    """The frame's progress poll rides on the page's ticket (so a load balancer hashing on
    tickets sends it to the replica starting that page's runner): JSON for a valid ticket, the
    same refusal as any ticket request otherwise."""
    g, slug, _ = attack_gallery
    with g.browser(VIEWER) as b:
        frame = b.get(f"/app/{slug}/open")
        assert frame.status_code == 200
    url = re.search(r'data-status-url="([^"]+)"', frame.text)[1]
    assert re.fullmatch(rf"/apps/{slug}/~t/[^/]+/~status", url), url
    with httpx.Client(base_url=g.url, timeout=60) as c:  # no cookie: the ticket is enough
        r = c.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json()["state"] in ("ready", "starting", "stopped"), r.json()
        assert "sandbox" in r.headers["content-security-policy"]
        token = url.split("/~t/")[1].split("/")[0]
        assert c.get(url.replace(token, "x" * 40)).status_code == 403
    with g.client(VIEWER) as c:  # only on a ticket path
        assert c.get(f"/apps/{slug}/~status").status_code == 404


def test_a_sandboxed_page_connects_its_kernel_with_the_ticket_only(attack_gallery):
    g, slug, _ = attack_gallery
    src = _ticket_src(g, VIEWER, slug)
    page = httpx.get(f"{g.url}{src}", timeout=120)
    kid = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page.text).group(1)
    ws_base = g.url.replace("http", "ws", 1)

    async def connect(path: str, origin: str) -> int:
        try:
            conn = await websocket_connect(HTTPRequest(
                f"{ws_base}{path}api/kernels/{kid}/channels?session_id=t",
                headers={"Origin": origin}))
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    # the sandboxed page's origin is "null": its ticket is its credential
    assert _in_thread(connect(src, "null")) == 101
    # without a ticket (and without a session) nothing connects
    assert _in_thread(connect(f"/apps/{slug}/", "null")) in (302, 403)


def _in_thread(coro: Any) -> Any:
    """Run a coroutine on its own loop (Playwright's sync API keeps one running here)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result(120)


def test_cookies_cannot_be_read_by_scripts(attack_gallery):
    g, _, _ = attack_gallery
    with httpx.Client(base_url=g.url, timeout=60) as c:
        page = c.get("/login")
        xsrf_cookie = page.headers["set-cookie"]
        assert xsrf_cookie.startswith("_xsrf=")
        assert "httponly" in xsrf_cookie.lower() and "samesite=strict" in xsrf_cookie.lower()
        token = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        r = c.post("/login", data={"username": VIEWER,
                                   "password": g.users[VIEWER].password, "_xsrf": token})
        session = [h for h in r.headers.get_list("set-cookie") if h.startswith("nbapps-session")]
        assert session and "httponly" in session[0].lower() and \
            "samesite=lax" in session[0].lower()


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"},
])
def test_the_session_is_not_used_from_app_or_cross_site_contexts(attack_gallery, headers):
    g, _, _ = attack_gallery
    with g.browser(VIEWER) as b:
        assert b.api("GET", "/api/me").json()["name"] == VIEWER  # same origin: the session
        assert b.api("GET", "/api/me", headers=headers).status_code == 401
        r = b.api("POST", "/api/me/tokens", json={"label": "from-elsewhere"}, headers=headers)
        assert r.status_code in (401, 403), r.text
        top = b.get("/api/me", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode":
                                        "navigate", "Sec-Fetch-Dest": "document"})
        assert top.status_code == 200  # a link from another site still opens the page


def test_browsers_opening_an_app_get_the_frame(attack_gallery):
    g, slug, _ = attack_gallery
    with g.browser(VIEWER) as b:
        for headers in ({"Accept": "text/html,application/xhtml+xml"},
                        {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}):
            r = b.get(f"/apps/{slug}/?step=4", headers=headers)
            assert r.status_code == 302 and r.headers["location"] == f"/app/{slug}/open?step=4"
        # in an iframe without a ticket: to the ticket URL of the same page
        r = b.get(f"/apps/{slug}/?step=4", headers={"Sec-Fetch-Mode": "navigate",
                                                    "Sec-Fetch-Dest": "iframe"})
        assert r.status_code == 302
        assert re.fullmatch(rf"/apps/{slug}/~t/[^/]+/\?step=4", r.headers["location"])
        # scripts and benchmarks reading the page get the page
        raw = b.get(f"/apps/{slug}/?step=4", timeout=120)
        assert raw.status_code == 200 and "jp-OutputArea" in raw.text


def test_a_missing_app_is_a_404_for_everyone(attack_gallery):
    g, _, _ = attack_gallery
    for who in ("vic", "adam"):
        with g.client(who) as c:
            for path in ("/apps/does-not-exist/", "/apps/does-not-exist/voila/static/voila.js",
                         "/app/does-not-exist", "/app/does-not-exist/open",
                         "/api/apps/does-not-exist/status"):
                r = c.get(path)
                assert r.status_code == 404, (who, path, r.status_code)
        with g.browser(who) as b:
            r = b.get("/apps/does-not-exist/", headers={"Accept": "text/html"})
            assert r.status_code == 302
            page = b.get(r.headers["location"])
            assert page.status_code == 404 and "Not found" in page.text


def test_the_frame_checks_the_parameters_before_opening_the_app(attack_gallery):
    g, slug, _ = attack_gallery
    with g.browser(VIEWER) as b:
        ok = b.get(f"/app/{slug}/open?step=5")
        assert ok.status_code == 200 and 'id="app-view"' in ok.text
        assert f"/apps/{slug}/~t/" in ok.text and "?step=5" in ok.text
        for query, problem in (("step=abc", "step"), ("bogus=1", "bogus")):
            bad = b.get(f"/app/{slug}/open?{query}")
            assert bad.status_code == 400 and 'id="app-view"' not in bad.text, query
            assert problem in bad.text and 'role="alert"' in bad.text, query
