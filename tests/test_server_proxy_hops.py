"""Behind a reverse proxy (``xheaders``): only ``trusted_proxy_hops`` entries of
X-Forwarded-For are believed, so rotating X-Real-Ip / X-Forwarded-For does not reset the login
limit (a real gallery process)."""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import httpx
import pytest

from nbapps.server.forwarded import client_address
from tests.server_harness import (
    Browser,
    catalog_of,
    new_data_dir,
    start_process,
    stop_process,
)


@pytest.mark.parametrize(("xff", "peer", "hops", "want"), [
    (None, "127.0.0.1", 1, "127.0.0.1"),                     # no proxy header: the peer
    ("203.0.113.9", "127.0.0.1", 1, "203.0.113.9"),           # one proxy appended the client
    ("6.6.6.6, 203.0.113.9", "127.0.0.1", 1, "203.0.113.9"),  # the client's own entry: ignored
    ("6.6.6.6, 203.0.113.9, 10.0.0.2", "10.0.0.3", 2, "203.0.113.9"),  # LB + nginx
    ("203.0.113.9", "10.0.0.3", 2, "10.0.0.3"),  # shorter than the hops: never the client's say
    ("6.6.6.6, not-an-ip", "127.0.0.1", 1, "127.0.0.1"),
    ("6.6.6.6, 203.0.113.9:4711", "127.0.0.1", 1, "203.0.113.9"),  # with a port
    ("6.6.6.6, [2001:db8::1]:443", "127.0.0.1", 1, "2001:db8::1"),
    ("6.6.6.6, 203.0.113.9", "127.0.0.1", 0, "127.0.0.1"),    # 0 hops: headers ignored
])
def test_client_address(xff, peer, hops, want):
    assert client_address(xff, peer, hops) == want


@pytest.fixture
def proxied_gallery(tmp_path):
    data_dir, db_url, users = new_data_dir(tmp_path)
    proc, url = start_process(data_dir, db_url, [
        "--NbappsServer.xheaders=True", "--NbappsServer.login_max_failures=3"])
    try:
        yield url, db_url, users, data_dir
    finally:
        stop_process(proc)


def test_rotating_forwarded_headers_do_not_reset_the_login_limit(proxied_gallery):
    url, db_url, users, data_dir = proxied_gallery
    counter = itertools.count(1)

    def via_proxy(client_ip: str) -> dict[str, str]:
        """Headers as nginx sends them: whatever the client wrote, then the address it saw."""
        n = next(counter)
        return {"X-Forwarded-For": f"198.51.100.{n}, 192.0.2.{n}, {client_ip}",
                "X-Real-Ip": f"203.0.113.{n}"}

    with Browser(httpx.Client(base_url=url, follow_redirects=False, timeout=60)) as attacker:
        for _ in range(3):
            r = attacker.post_form("/login", {"username": "ana", "password": "guess"},
                                   headers=via_proxy("10.0.0.7"))
            assert r.status_code == 401
        for _ in range(3):  # a new "address" each time: still the same client
            r = attacker.post_form("/login", {"username": "ana",
                                              "password": users["ana"].password},
                                   headers=via_proxy("10.0.0.7"))
            assert r.status_code == 429 and "Retry-After" in r.headers
    # another client behind the same proxy is not blocked
    with Browser(httpx.Client(base_url=url, follow_redirects=False, timeout=60)) as ana:
        r = ana.post_form("/login", {"username": "ana", "password": users["ana"].password},
                          headers=via_proxy("10.0.0.8"))
        assert r.status_code == 302
    with catalog_of(SimpleNamespace(db_url=db_url, data_dir=data_dir)) as (cat, _):
        ips = {e.ip for e in cat.list_audit(limit=100) if e.action.startswith("login")}
        assert ips == {"10.0.0.7", "10.0.0.8"}
        assert len(cat.list_audit(action="login.throttled")) == 1
