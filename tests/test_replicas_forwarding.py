"""Forwarding between replicas (:mod:`nbapps.server.peers`): a request for an app kernel
reaches the replica that owns it, whichever replica receives it.

Two real gallery processes on one PostgreSQL catalog. A page is opened on A (a browser's
ticket URL); its kernel requests then go to B, as they do behind a load balancer whose hash
moved (a replica came back, a scale-up, a rolling update): the kernel model, the kernel socket
(a widget-kind message answered; an execute request still dropped) and the shutdown beacon all
reach A's kernel through B. A request B received forwarded is never forwarded again. After
``kill -9`` of A, B answers a request for A's kernel with a 404 within its bounded question
to the dead peer, and serves the app itself. B runs the app too all along: a kernel its own
runner does not own is still A's.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
import uuid
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from nbapps.catalog import open_catalog
from nbapps.runner.orphans import reap_orphans
from nbapps.server.peers import FORWARDED, Peers
from tests.server_harness import seed_users
from tests.test_replicas import _wait_serving, publish, replica

pytestmark = [pytest.mark.postgres, pytest.mark.kernel]

_KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')
_IFRAME = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe", "Accept": "text/html"}


def _open_page(url: str, slug: str, token: str) -> tuple[str, str]:
    """Open the app as the gallery's frame does: the ticket URL (its base, with the ticket)
    and the kernel id of the page served there."""
    r = httpx.get(f"{url}/apps/{slug}/", headers={**_IFRAME, "Authorization": f"Bearer {token}"},
                  timeout=60)
    assert r.status_code == 302, r.text
    base = r.headers["Location"].split("?")[0]
    assert "/~t/" in base and base.endswith("/"), base
    page = httpx.get(f"{url}{base}", headers=_IFRAME, timeout=120)
    assert page.status_code == 200, page.text[:500]
    m = _KERNEL_ID.search(page.text)
    assert m, page.text[:500]
    return base, m.group(1)


def _message(msg_type: str, content: dict[str, Any] | None = None) -> str:
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "", "session": uuid.uuid4().hex,
                   "msg_type": msg_type, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "content": content or {}, "channel": "shell",
        "buffers": []})


async def _socket_round(ws_url: str) -> tuple[str, list[str]]:
    """Through ``ws_url``: an execute request (must be dropped), then a kernel info request;
    returns the reply's type and every message type seen before it."""
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Origin": "null"},
                                               request_timeout=30))
    try:
        conn.write_message(_message("execute_request", {"code": "1 + 1", "silent": False}))
        conn.write_message(_message("kernel_info_request"))
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
            assert raw is not None, f"the socket closed; seen {seen}"
            msg_type = json.loads(raw)["header"]["msg_type"]
            if msg_type == "kernel_info_reply":
                return msg_type, seen
            seen.append(msg_type)
        raise AssertionError(f"no kernel_info_reply; seen {seen}")
    finally:
        conn.close()


def _wait_registered(db_url: str, count: int, timeout: float = 30) -> None:
    cat = open_catalog(db_url)
    try:
        deadline = time.monotonic() + timeout
        while len(cat.live_replicas(Peers.max_age)) < count:
            assert time.monotonic() < deadline, "the replicas never registered"
            time.sleep(0.2)  # the registry is a table polled by its readers
    finally:
        cat.close()


def test_kernel_requests_reach_the_owner_through_another_replica(pg_server, tmp_path):
    name, db_url = pg_server.fresh_database()
    try:
        users = seed_users(db_url)
        env = {"NBAPPS_COOKIE_SECRET": secrets.token_hex(32)}
        common = [f"--store-url=file://{tmp_path / 'store'}",
                  "--RuntimeConfiguration.pool_size=1",
                  "--RuntimeConfiguration.custom_pool_size=1",
                  "--RuntimeConfiguration.max_kernels_per_viewer=0"]
        token = users["vic"].token
        with replica(tmp_path / "a", db_url, users, [*common, "--NbappsServer.check_workers=1"],
                     serve_apps=True, env=env) as a, \
                replica(tmp_path / "b", db_url, users, [*common, "--NbappsServer.check_workers=0"],
                        serve_apps=True, env=env) as b:
            _, slug = publish(a, tmp_path / "v1", "FORWARD-V1")
            # both replicas run the app: B's own runner must not take A's kernel requests
            _wait_serving(a, slug, "FORWARD-V1", 180)
            _wait_serving(b, slug, "FORWARD-V1", 180)
            _wait_registered(db_url, 2)

            base, kernel = _open_page(a.url, slug, token)
            model = f"{base}api/kernels/{kernel}"
            direct = httpx.get(f"{a.url}{model}", timeout=30)
            assert direct.status_code == 200 and direct.json()["id"] == kernel
            # the kernel model through B: B owns no such kernel and asks A
            t0 = time.perf_counter()
            via_b = httpx.get(f"{b.url}{model}", timeout=30)
            first = time.perf_counter() - t0
            assert via_b.status_code == 200, via_b.text
            assert via_b.json()["id"] == kernel
            assert "sandbox" in via_b.headers["Content-Security-Policy"]
            t0 = time.perf_counter()
            assert httpx.get(f"{b.url}{model}", timeout=30).status_code == 200  # remembered
            again = time.perf_counter() - t0
            print(f"\nkernel model through the other replica: {first * 1000:.0f} ms, "
                  f"then {again * 1000:.0f} ms (direct: "
                  f"{direct.elapsed.total_seconds() * 1000:.0f} ms)")
            # a request B received forwarded is never forwarded again
            looped = httpx.get(f"{b.url}{model}", headers={FORWARDED: "x"}, timeout=30)
            assert looped.status_code == 404
            # a ticket for another app, or no ticket and no credential: refused, not forwarded
            assert httpx.get(f"{b.url}/apps/{slug}/api/kernels/{kernel}",
                             timeout=30).status_code in (302, 401, 403)

            # the kernel socket through B: widget-kind messages answered, execute dropped
            ws_url = "ws" + b.url.removeprefix("http") + f"{base}api/kernels/{kernel}/channels"
            reply, seen = asyncio.run(_socket_round(ws_url))
            assert reply == "kernel_info_reply"
            assert "execute_reply" not in seen and "execute_input" not in seen, seen

            # the page's shutdown beacon through B ends A's kernel
            shut = httpx.post(f"{b.url}{base}voila/api/shutdown/{kernel}",
                              headers={"Origin": "null"}, timeout=30)
            assert shut.status_code < 300, (shut.status_code, shut.text)
            deadline = time.monotonic() + 30
            while httpx.get(f"{a.url}{model}", timeout=30).status_code != 404:
                assert time.monotonic() < deadline, "the kernel did not end"
                time.sleep(0.2)

            # B's metrics count what it passed on (model x2, socket, beacon) and its peer
            with b.client("adam") as c:
                metrics = c.get("/metrics").text
            assert "nbapps_replica_peers 1.0" in metrics, metrics[-2000:]
            assert "nbapps_forwarded_kernel_requests_total 4.0" in metrics

            # A dies: B answers for A's kernel with a 404 in bounded time, and serves the app
            base2, kernel2 = _open_page(a.url, slug, token)
            assert httpx.get(f"{b.url}{base2}api/kernels/{kernel2}", timeout=30
                             ).status_code == 200
            a.process.kill()
            a.process.wait(10)
            t0 = time.perf_counter()
            lost = httpx.get(f"{b.url}{base2}api/kernels/{kernel2}", timeout=30)
            waited = time.perf_counter() - t0
            assert lost.status_code == 404, lost.text
            assert waited < Peers.ask_timeout + 2, waited
            print(f"a request for the dead replica's kernel: 404 after {waited:.2f} s")
            _wait_serving(b, slug, "FORWARD-V1", 180)
    finally:
        reap_orphans(tmp_path / "a" / "data" / "runtime")  # the runners of the killed replica
        pg_server.drop_database(name)
