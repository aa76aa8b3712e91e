"""Replicas' addresses for forwarding (:mod:`nbapps.server.peers`): checked, with a default
that peers can reach; a bad ``internal_url`` stops ``nbapps serve`` with one coded line."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from nbapps.server.peers import checked_url, listen_url


@pytest.mark.parametrize(("given", "kept"), [
    ("http://10.0.0.5:8866/", "http://10.0.0.5:8866"),
    ("https://[fd00::5]:443", "https://[fd00::5]:443"),
    ("", ""),
])
def test_internal_url_is_an_origin(given, kept):
    assert checked_url(given) == kept


@pytest.mark.parametrize("bad", ["10.0.0.5:8866", "http://10.0.0.5", "http://h:1/gallery/",
                                 "ftp://h:21", "http://u:p@h:1", "http://h:port"])
def test_anything_else_is_refused(bad):
    with pytest.raises(ValueError, match="is not http://host:port"):
        checked_url(bad)


def test_the_default_is_the_listening_address_or_the_hosts():
    assert listen_url("127.0.0.1", 8866) == "http://127.0.0.1:8866"
    assert listen_url("::1", 1) == "http://[::1]:1"
    # listening on every interface: the host name's address (a pod's IP), never 0.0.0.0
    host = socket.gethostbyname(socket.gethostname())
    assert listen_url("0.0.0.0", 8866) == f"http://{host}:8866"


def test_a_bad_internal_url_stops_the_server_with_its_code(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nbapps.server.app", "--port=0",
                          f"--data-dir={tmp_path}", "--NbappsServer.internal_url=gallery-1"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "NBA391" in out.stderr + out.stdout and "Traceback" not in out.stderr + out.stdout


class _FakeCatalog:
    """The registry's three calls on a list (the real table is tests/test_catalog_replicas)."""

    def __init__(self, others: list[str]) -> None:
        from nbapps.catalog.models import utcnow
        from nbapps.catalog.replicas import ReplicaInfo

        self.rows = [ReplicaInfo(f"peer{i}", url, utcnow()) for i, url in enumerate(others)]

    def replica_heartbeat(self, replica_id: str, url: str) -> None:
        pass

    def live_replicas(self, max_age: float) -> list:
        return list(self.rows)

    def forget_replica(self, replica_id: str) -> None:
        pass


def test_peers_are_asked_once_per_kernel_and_a_missing_one_is_remembered():
    """Two real HTTP peers on loopback: one owns kernel K (200), the other does not (404)."""
    import asyncio

    from tornado import httpserver, netutil, web
    from tornado.httpclient import AsyncHTTPClient

    from nbapps.server.peers import FORWARDED, Peers

    hits: list[tuple[int, str, str]] = []

    class Model(web.RequestHandler):
        def get(self, kernel: str) -> None:
            hits.append((self.application.settings["n"], kernel,
                         self.request.headers.get(FORWARDED, "")))
            owner = self.application.settings["n"] == 1 and kernel == "k"
            self.set_status(200 if owner else 404)
            self.finish({"id": kernel} if owner else {})

    async def scenario() -> None:
        urls, servers = [], []
        for n in range(2):
            sockets = netutil.bind_sockets(0, "127.0.0.1")
            server = httpserver.HTTPServer(web.Application([(r"/m/(.*)", Model)], n=n))
            server.add_sockets(sockets)
            servers.append(server)
            urls.append(f"http://127.0.0.1:{sockets[0].getsockname()[1]}")
        http = AsyncHTTPClient(force_instance=True)

        async def run(fn, *args):
            return fn(*args)

        async def both_asked() -> None:
            for _ in range(500):
                if sorted(n for n, _, _ in hits) == [0, 1]:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(hits)

        peers = Peers("http://127.0.0.1:1", _FakeCatalog(urls), run, lambda: http)
        try:
            await peers.heartbeat()
            assert peers.others == urls
            found = await peers.find("k", "/m/k", {FORWARDED: peers.id})
            assert found is not None and found[0] == urls[1] and found[1].code == 200
            await both_asked()  # the other peer's 404 may come after the owner's answer
            assert {h for _, _, h in hits} == {peers.id}
            hits.clear()
            again = await peers.find("k", "/m/k", {})
            assert again == (urls[1], None) and hits == []  # the owner is remembered
            assert await peers.find("gone", "/m/gone", {}) is None
            assert await peers.find("gone", "/m/gone", {}) is None
            assert [k for _, k, _ in hits] == ["gone", "gone"]  # one round, not one per retry
            peers.gone("k")
            hits.clear()
            assert (await peers.find("k", "/m/k", {}))[0] == urls[1]  # asked again
            await both_asked()
        finally:
            for server in servers:
                server.stop()
            http.close()

    asyncio.run(scenario())
