"""The /apps/<slug>/ proxy with a real runner: pages, parameters, streaming, WebSockets, auth.

The minimal app of :mod:`tests.test_runner_fixtures` mounts the proxy with one line
(``proxy_routes(supervisor, authorize)``), like the gallery does.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import uuid

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from tests.test_runner_fixtures import Gallery, widget_app_notebook, write_bundle
from tests.test_runner_security import _reply, kernel_id_of, kmsg

pytestmark = pytest.mark.kernel

BIG = 12 * 1024 * 1024  # above tornado's 10 MiB default WebSocket message limit
V1 = "v1.kernel.websocket.jupyter.org"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("proxy")
    big = f"import ipywidgets\nbig = ipywidgets.Textarea(value='x' * {BIG})"
    nb = widget_app_notebook(extra=[big])
    demo = write_bundle(root / "bundles" / "demo", nb)
    policy = {"anonymous": True}

    def authorize(handler, slug):
        if handler.request.headers.get("X-User") or policy["anonymous"]:
            return True
        handler.redirect(f"/login?next=/apps/{slug}/")
        return False

    g = Gallery(root, {"demo": demo}, authorize=authorize)
    g.policy = policy  # type: ignore[attr-defined]
    try:
        g.start()
        g.ready("demo")
        yield g
    finally:
        g.stop()


@pytest.fixture
def client():
    with httpx.Client(timeout=120, follow_redirects=False) as c:
        yield c


def shown_text(html: str) -> list[str]:
    return re.findall(r"(RESULT[^<\n]*|HIDDEN-OUTPUT[^<\n]*)", html)


def test_first_request_gets_a_starting_page_never_a_hang(tmp_path):
    bundle = write_bundle(tmp_path / "b", widget_app_notebook())
    g = Gallery(tmp_path, {"cold": bundle})
    try:
        g.start()
        t0 = time.monotonic()
        r = httpx.get(g.url("/apps/cold/"), timeout=10)
        assert time.monotonic() - t0 < 2
        assert r.status_code == 503 and r.headers["retry-after"]
        assert "Starting" in r.text and 'http-equiv="refresh"' in r.text
        assert httpx.get(g.url("/apps/nope/"), timeout=10).status_code == 404
        g.ready("cold", warm=False)
        assert httpx.get(g.url("/apps/cold/"), timeout=60).status_code == 200
    finally:
        g.stop()


def test_default_page_is_served_from_the_pool_with_only_widget_cells(gallery, client):
    gallery.wait_warm("demo")
    t0 = time.monotonic()
    r = client.get(gallery.url("/apps/demo/"))
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert shown_text(r.text) == ["RESULT 3 x 0.5 9"]  # hidden cell ran (square) but not shown
    assert "## Result" not in r.text and "<h2 id=\"Result\">" in r.text  # markdown rendered
    assert "import os" not in r.text  # sources stripped
    assert r.text.rstrip().endswith("</html>")
    assert elapsed < 2.0  # pre-rendered (a cold kernel would take longer on this machine)
    deadline = time.monotonic() + 5
    while ("demo", "page", 200) not in [o[:3] for o in gallery.observed]:
        assert time.monotonic() < deadline, gallery.observed
        time.sleep(0.05)


def test_custom_parameters_are_checked_injected_and_typed(gallery, client):
    gallery.wait_warm("demo")
    r = client.get(gallery.url("/apps/demo/?n=7&label=hello%20world&rate=0.25"))
    assert r.status_code == 200
    assert shown_text(r.text) == ["RESULT 7 hello world 0.25 49"]
    # values equal to the defaults are served from the default pool
    assert shown_text(client.get(gallery.url("/apps/demo/?n=3")).text) == ["RESULT 3 x 0.5 9"]


@pytest.mark.parametrize(("query", "problem"), [
    ("?n=seven", "expects an integer"),
    ("?rate=2", "maximum is 1"),
    ("?bogus=1", "unknown parameter &#x27;bogus&#x27;"),
    ("?template=nonexistent", "unknown parameter &#x27;template&#x27;"),
    ("?theme=dark", "unknown parameter &#x27;theme&#x27;"),
])
def test_bad_parameters_get_a_400_page_listing_the_parameters(gallery, client, query, problem):
    r = client.get(gallery.url(f"/apps/demo/{query}"))
    assert r.status_code == 400
    assert problem in r.text
    for name in ("<code>n</code>", "<code>label</code>", "<code>rate</code>"):
        assert name in r.text


def test_custom_pages_work_when_the_custom_pool_is_empty(gallery, client):
    """Back-to-back custom pages: the second finds the pool empty and gets a fresh kernel."""
    gallery.wait_warm("demo")
    first = client.get(gallery.url("/apps/demo/?n=4"))
    second = client.get(gallery.url("/apps/demo/?n=6&label=cold"))
    assert shown_text(first.text) == ["RESULT 4 x 0.5 16"]
    assert shown_text(second.text) == ["RESULT 6 cold 0.5 36"]


def test_errors_are_shown_without_tracebacks_and_slow_cells_time_out(gallery, client):
    """A hidden cell's error becomes a short notice; a cell over the app's timeout is stopped."""
    root = gallery.root
    broken = widget_app_notebook(extra=["import json\nsecret_detail = 1 / 0"])
    slow = widget_app_notebook(extra=["import time as _t\n_t.sleep(120)"])
    slow.metadata["nbapps"]["timeout"] = 3
    gallery.apps["broken"] = write_bundle(root / "bundles" / "broken", broken)
    gallery.apps["slow"] = write_bundle(root / "bundles" / "slow", slow)
    gallery.versions.update(broken="v1", slow="v1")
    try:
        gallery.ready("broken", warm=False)
        r = client.get(gallery.url("/apps/broken/"))
        assert r.status_code == 200 and "This app hit an error" in r.text
        for leak in ("ZeroDivisionError", "secret_detail", "Traceback", "1 / 0"):
            assert leak not in r.text
        assert "RESULT" not in r.text  # Voilà stops at the failing cell
        gallery.ready("slow", warm=False)
        t0 = time.monotonic()
        r = client.get(gallery.url("/apps/slow/?n=4"))  # a custom page: runs after the request
        assert r.status_code == 200 and r.text.rstrip().endswith("</html>")
        assert time.monotonic() - t0 < 60
        assert "This app hit an error" in r.text
    finally:
        gallery.loop.run(gallery.supervisor.retire("broken"))
        gallery.loop.run(gallery.supervisor.retire("slow"))


def test_app_url_without_slash_redirects(gallery, client):
    r = client.get(gallery.url("/apps/demo?n=4"))
    assert r.status_code in (301, 302) and r.headers["location"] == "/apps/demo/?n=4"


def test_no_cdn_assets_and_font_awesome_is_served_locally(gallery, client):
    html = client.get(gallery.url("/apps/demo/")).text
    urls = re.findall(r'(?:src|href)="(https?://[^"]+)"', html)
    assert urls == []
    assert "cdn.jsdelivr.net" not in html and "cdnjs" not in html
    fa = re.search(r'href="(/apps/demo/voila/templates/nbapps/static/fontawesome/css/all\.min'
                   r'\.css[^"]*)"', html)
    assert fa, "Font Awesome not linked locally"
    css = client.get(gallery.url(fa.group(1).replace("&amp;", "&")))
    assert css.status_code == 200 and b"fa-" in css.content
    font = client.get(gallery.url(
        "/apps/demo/voila/templates/nbapps/static/fontawesome/webfonts/fa-solid-900.woff2"))
    assert font.status_code == 200 and len(font.content) > 10000


def test_mermaid_cdn_script_is_not_loaded(gallery, client):
    html = client.get(gallery.url("/apps/demo/")).text
    scripts = re.findall(r"import\s*\(?\s*['\"](https?://[^'\"]+)", html)
    assert not scripts, scripts


def test_page_streams_chunk_by_chunk(gallery):
    """A slow custom page arrives in several chunks while it executes (no buffering)."""
    gallery.wait_warm("demo")
    chunks: list[tuple[float, int]] = []

    async def fetch() -> None:
        from tornado.httpclient import AsyncHTTPClient

        t0 = time.monotonic()
        await AsyncHTTPClient(force_instance=True).fetch(HTTPRequest(
            gallery.url("/apps/demo/?n=5"), request_timeout=120,
            streaming_callback=lambda c: chunks.append((time.monotonic() - t0, len(c)))))

    asyncio.run(fetch())
    assert len(chunks) >= 3
    assert chunks[0][0] < chunks[-1][0]


async def _open(gallery, kid: str, **kw):
    return await websocket_connect(
        HTTPRequest(gallery.ws_url(f"/apps/demo/api/kernels/{kid}/channels?session_id=t"),
                    headers=kw.pop("headers", {})),
        max_message_size=64 * 1024 * 1024, **kw)


def test_websocket_large_messages_both_ways_and_v1_protocol(gallery, client):
    kid = kernel_id_of(client.get(gallery.url("/apps/demo/")).text)
    assert client.get(gallery.url(f"/apps/demo/api/kernels/{kid}")).json()["id"] == kid

    async def run() -> None:
        conn = await _open(gallery, kid)
        comm = uuid.uuid4().hex
        conn.write_message(kmsg("comm_open", {"comm_id": comm, "data": {},
                                              "target_name": "jupyter.widget.control"},
                                metadata={"version": "1.0.0"}))
        conn.write_message(kmsg("comm_msg", {"comm_id": comm,
                                             "data": {"method": "request_states"}}))
        deadline = time.monotonic() + 60
        size = 0
        while time.monotonic() < deadline and size < BIG:
            raw = await asyncio.wait_for(conn.read_message(), 60)
            assert raw is not None
            msg = json.loads(raw)
            if msg["header"]["msg_type"] == "comm_msg":
                size = max(size, len(raw))
        assert size > BIG, "the kernel's large widget state did not come through"
        # browser -> kernel: a large message passes and the connection stays usable
        conn.write_message(kmsg("comm_msg", {"comm_id": comm, "data": {
            "method": "custom", "content": "y" * BIG}}))
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply", timeout=60)
        conn.close()
        v1 = await _open(gallery, kid, subprotocols=[V1])
        assert v1.selected_subprotocol == V1
        v1.close()

    asyncio.run(run())


def test_page_close_shuts_the_kernel_down(gallery, client):
    """Voilà's unload beacon works through the proxy (403 in plain standalone Voilà)."""
    page = client.get(gallery.url("/apps/demo/"))
    kid = kernel_id_of(page.text)
    runner = gallery.supervisor.runner_for("demo", kid)
    assert runner.owns_kernel(kid)

    async def run() -> None:
        conn = await _open(gallery, kid)
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply")
        assert runner.open_websockets >= 1
        conn.close()

    asyncio.run(run())
    bad = client.post(gallery.url(f"/apps/demo/voila/api/shutdown/{kid}"),
                      headers={"Origin": "http://evil.example"})
    assert bad.status_code == 403 and runner.owns_kernel(kid)
    # the page's unload beacon: a multipart form with an empty _xsrf, as Voilà's JS sends it
    beacon = client.post(gallery.url(f"/apps/demo/voila/api/shutdown/{kid}"),
                         files={"_xsrf": (None, "")}, headers={"Origin": gallery.url("")})
    assert beacon.status_code == 204
    assert client.get(gallery.url(f"/apps/demo/api/kernels/{kid}")).status_code == 404
    assert not runner.owns_kernel(kid)


async def _drain(conn) -> None:
    while True:
        if await conn.read_message() is None:
            return None


def test_browser_close_closes_the_runner_side(gallery, client):
    kid = kernel_id_of(client.get(gallery.url("/apps/demo/")).text)
    runner = gallery.supervisor.runner_for("demo", kid)

    async def run() -> None:
        conn = await _open(gallery, kid)
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply")
        conn.close(1000, "bye")

    before = runner.read_status().get("connections", 0)
    asyncio.run(run())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if runner.open_websockets == 0 and runner.read_status().get("connections", 0) <= before:
            break
        time.sleep(0.1)
    assert runner.open_websockets == 0
    assert runner.read_status().get("connections", 0) <= before


def test_authorization_runs_before_anything_is_proxied(gallery, client):
    kid = kernel_id_of(client.get(gallery.url("/apps/demo/")).text)
    gallery.policy["anonymous"] = False
    try:
        for path in ("/apps/demo/", "/apps/demo/voila/static/voila.js",
                     f"/apps/demo/api/kernels/{kid}"):
            r = client.get(gallery.url(path))
            assert r.status_code == 302 and r.headers["location"].startswith("/login")
        assert client.get(gallery.url("/apps/demo/"),
                          headers={"X-User": "ann"}).status_code == 200

        async def ws() -> int:
            try:
                conn = await _open(gallery, kid)
            except HTTPClientError as exc:
                return exc.code
            conn.close()
            return 101

        assert asyncio.run(ws()) in (302, 403)
        assert asyncio.run(_ws_ok(gallery, kid, {"X-User": "ann"}))
    finally:
        gallery.policy["anonymous"] = True


async def _ws_ok(gallery, kid, headers) -> bool:
    conn = await _open(gallery, kid, headers=headers)
    conn.write_message(kmsg("kernel_info_request"))
    await _reply(conn, "kernel_info_reply")
    conn.close()
    return True


def test_cross_site_websocket_is_refused(gallery, client):
    kid = kernel_id_of(client.get(gallery.url("/apps/demo/")).text)

    async def run() -> int:
        try:
            conn = await _open(gallery, kid, headers={"Origin": "http://evil.example"})
        except HTTPClientError as exc:
            return exc.code
        conn.close()
        return 101

    assert asyncio.run(run()) == 403


def test_runner_crash_closes_sockets_and_the_runner_is_restarted(gallery, client):
    """Last test of the module: SIGKILL the runner; sockets close, the app comes back."""
    import os
    import signal

    kid = kernel_id_of(client.get(gallery.url("/apps/demo/")).text)
    old = gallery.supervisor.runner_for("demo", kid)

    async def run() -> None:
        conn = await _open(gallery, kid)
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply")
        os.kill(old.pid, signal.SIGKILL)
        assert await asyncio.wait_for(_drain(conn), 30) is None  # closed by the proxy

    asyncio.run(run())
    deadline = time.monotonic() + 120
    statuses = []
    while time.monotonic() < deadline:
        r = client.get(gallery.url("/apps/demo/"))
        statuses.append(r.status_code)
        if r.status_code == 200:
            break
        assert r.status_code == 503 and r.headers.get("retry-after")  # never a 502 or a hang
        time.sleep(0.5)
    assert statuses[-1] == 200, statuses
    new = gallery.supervisor.runner_for("demo")
    assert new.pid != old.pid and gallery.supervisor.counters["crashes"] >= 1
    assert not old.dir.exists()
