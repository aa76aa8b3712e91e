"""Issue 12.3's acceptance: while viewers try each abuse of the issue on one app (plain page
GETs that never connect, 60 MiB WebSocket messages, ``?mb=4096``, ``?procs=1000``), the
gallery (a real ``nbapps.server.app`` process) keeps answering ``/healthz`` quickly and
another viewer of the same app still gets a rendered page."""
from __future__ import annotations

import base64
import os
import re
import socket
import statistics
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import (
    Browser,
    Gallery,
    build_archive,
    new_data_dir,
    start_process,
    stop_process,
)
from tests.test_app_browser import _approve_api, _submit
from tests.test_runner_limits import ABUSE

pytestmark = pytest.mark.kernel
MIB = 1024 * 1024
KERNEL_IN_PAGE = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
#: a gallery whose event loop the abuse blocks answers /healthz in seconds (or not at all);
#: latency figures are printed, not asserted (CI's two cores are shared: the issue's 200 ms
#: p99 target is a benchmark figure, measured on a quiet machine)
STALL_LIMIT = 10.0


class HealthProbe:
    """``GET /healthz`` every 50 ms from a thread, keeping each answer's time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    ok = client.get(f"{self.url}/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.times.append(time.perf_counter() - t0)
                self.failures += not ok
                self._stop.wait(0.05)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def p99(self) -> float:
        return statistics.quantiles(self.times, n=100)[98]


def abuse_app() -> Any:
    """The runner-limits app, ending with a display (a published widget cell must show
    something)."""
    return make_notebook(params="mb = 0  # MiB to hold\nprocs = 0  # processes to start\n"
                                "shm_mb = 0  # MiB to write to /dev/shm\n"
                                "escape = False  # try to raise our own limit\n",
                         widget=ABUSE + "\nfrom IPython.display import HTML, display\n"
                                        "display(HTML('<p>RESULT ok</p>'))")


@contextmanager
def abuse_gallery(tmp_path: Any) -> Iterator[tuple[Gallery, str]]:
    data_dir, db_url, users = new_data_dir(tmp_path)
    proc, url = start_process(data_dir, db_url, serve_apps=True, args=[
        "--RuntimeConfiguration.pool_size=1",
        "--RuntimeConfiguration.custom_pool_size=1",
        f"--RuntimeConfiguration.kernel_memory_limit={256 * MIB}",
        "--RuntimeConfiguration.kernel_max_processes=48",
        "--RuntimeConfiguration.unconnected_cull_timeout=10"])
    g = Gallery(url=url, data_dir=data_dir, db_url=db_url, users=users, process=proc)
    try:
        sub = _submit(g, build_archive(tmp_path / "lim", abuse_app()))
        _approve_api(g, sub["id"])
        yield g, sub["slug"]
    finally:
        stop_process(proc)


def _wait_ready(g: Gallery, browser: Browser, slug: str) -> None:
    deadline = time.monotonic() + 240
    while (browser.get(f"/api/apps/{slug}/status").json()["state"] != "ready"
           and time.monotonic() < deadline):
        browser.get(f"/apps/{slug}/")  # a page request starts the app's runner
        time.sleep(1)


def _served(g: Gallery, browser: Browser, slug: str) -> bool:
    """Another viewer opens the app, sees it rendered, and leaves (Voilà's unload beacon)."""
    r = browser.get(f"/apps/{slug}/", timeout=180)
    if r.status_code != 200 or "RESULT ok" not in r.text:
        print("not served:", r.status_code, r.text[-1500:])
        return False
    kid = KERNEL_IN_PAGE.search(r.text).group(1)
    browser.post_form(f"/apps/{slug}/voila/api/shutdown/{kid}", headers={"Origin": g.url})
    return True


def _send_large_messages(g: Gallery, browser: Browser, slug: str) -> list[int | None]:
    """Five WebSockets to the page's kernel, each sent one 60 MiB message: the close codes."""
    page = browser.get(f"/apps/{slug}/", timeout=180)
    kid = KERNEL_IN_PAGE.search(page.text).group(1)
    cookie = "; ".join(f"{k}={v}" for k, v in browser.http.cookies.items())
    path = f"/apps/{slug}/api/kernels/{kid}/channels?session_id=big"
    return [_close_code_of_large_message(g.url, path, {"Cookie": cookie, "Origin": g.url},
                                         60 * MIB) for _ in range(5)]


def _close_code_of_large_message(url: str, path: str, headers: dict[str, str],
                                 size: int) -> int | None:
    """Open a WebSocket on ``path`` over a plain blocking socket, send one text message of
    ``size`` bytes and return the code of the server's close frame (None: none came).

    Not tornado's client: the gallery refuses the message on its frame header (tornado writes
    a 1009 close frame and drops the connection at once), and as most of the message is still
    unread, the gallery's TCP stack answers the client's next segments with a reset. The close
    frame is in the client's receive buffer by then and Linux still delivers it after the
    reset, but tornado's client, busy writing, closes its stream on the send error without
    reading it: ``close_code`` None (measured: tornado's client saw 1009 in 1-2 of 15 tries
    against this gallery, 0-4 of 20 against a plain tornado server; CI once saw None five times
    out of five here). A blocking socket reads it: 1009 in 15 of 15 and 20 of 20."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        request = [f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
                   "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                   "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode())
        reader = sock.makefile("rb")
        status = reader.readline()
        assert status.split(b" ")[1:2] == [b"101"], status
        while reader.readline() not in (b"\r\n", b""):  # the handshake's headers
            pass
        mask = os.urandom(4)  # clients mask their frames; the message is "x" * size
        assert size % 4 == 0
        try:
            sock.sendall(bytes([0x81, 0x80 | 127]) + struct.pack("!Q", size) + mask)
            sock.sendall(bytes(ord("x") ^ m for m in mask) * (size // 4))
        except (ConnectionResetError, BrokenPipeError):
            pass  # refused while sending: what the server wrote before is still readable
        try:
            while True:  # frames the kernel sent before, then the close frame
                head = reader.read(2)
                if len(head) < 2:
                    return None
                length = head[1] & 0x7F
                if length >= 126:
                    extra = reader.read(2 if length == 126 else 8)
                    length = int.from_bytes(extra, "big")
                payload = reader.read(length)
                if head[0] & 0x0F == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except ConnectionResetError:
            return None


def _abusive_page(browser: Browser, path: str) -> str:
    """The abuser's own page, or "" if it has not come back within 90 s: a kernel pressed
    against its memory limit may be OOM-killed at once or, reclaiming its own file pages, crawl
    until Voilà's cell timeout (60 s, then interrupts). Either way the abuse fails; what the
    test checks is that nobody else pays for it."""
    try:
        return browser.get(path, timeout=90).text.replace("&#34;", '"')
    except httpx.TimeoutException:
        return ""


@pytest.mark.timeout(900)
def test_the_gallery_stays_responsive_while_a_viewer_abuses_an_app(tmp_path):
    with abuse_gallery(tmp_path) as (g, slug):
        browsers = {who: g.browser(who) for who in ("vic", "ana", "alf", "rob", "rita", "adam")}
        try:
            _wait_ready(g, browsers["adam"], slug)
            with HealthProbe(g.url) as probe:
                # 1. one account GETs 12 pages and never connects: 3 hold kernels, the rest wait
                answers = [browsers["vic"].get(f"/apps/{slug}/", timeout=180).status_code
                           for _ in range(12)]
                assert answers.count(200) == 3 and answers.count(503) == 9, answers
                assert _served(g, browsers["rita"], slug)
                # 2. five 60 MiB WebSocket messages: the gallery closes each connection with
                # 1009 (too big), read even when the rest of the message meets a reset
                codes = _send_large_messages(g, browsers["alf"], slug)
                assert codes == [1009] * 5, codes
                assert _served(g, browsers["rita"], slug)
                # 3. and 4. app code asked to hold 4 GiB and to start 1000 processes
                big = _abusive_page(browsers["ana"], f"/apps/{slug}/?mb=4096")
                assert '"held_mb": 4096' not in big
                assert _served(g, browsers["rita"], slug)
                many = _abusive_page(browsers["rob"], f"/apps/{slug}/?procs=1000")
                assert '"started": 1000' not in many
                assert _served(g, browsers["rita"], slug)
            p99, worst = probe.p99(), max(probe.times)
            print(f"/healthz during the abuses: {len(probe.times)} requests, "
                  f"p50 {statistics.median(probe.times) * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms, max {max(probe.times) * 1000:.0f} ms")
            assert probe.failures == 0
            assert worst < STALL_LIMIT, f"/healthz stalled {worst:.1f} s (p99 {p99:.2f} s)"
        finally:
            for b in browsers.values():
                b.close()
