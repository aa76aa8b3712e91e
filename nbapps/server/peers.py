"""Forwarding between gallery replicas: a request for an app kernel reaches its owner.

A replica owns the kernels of the app pages it rendered (its runners are its own child
processes). The load balancer keeps a page's requests on that replica by hashing on the page's
ticket (:mod:`nbapps.loadbalancer`), but the hash ring changes whenever a replica comes or goes:
one that returns after a crash, a scale-up, every pod of a rolling update. Keys then move, and
the requests of pages opened before (the kernel model read when a socket reconnects, the
socket itself, the shutdown beacon when the page closes) reach a replica that does not own
their kernel. Without forwarding that replica answers 404: the page's widgets stop answering
and its kernel stays until the idle cull.

So each replica registers the address its peers reach it at (``NbappsServer.internal_url``)
in the catalog and refreshes it every few seconds (:class:`Peers`, ``replicas`` table). A
replica asked about a kernel it does not own asks its live peers with the same request (the
kernel model, ``GET <app base>api/kernels/<id>``, with the viewer's own ticket or credential,
which every replica checks itself: forwarding grants nothing) and passes the request on to the
one that answers 200: the model as it came, the shutdown as a POST, the socket as a socket to
the peer (messages still filtered on both). The owner of a kernel is remembered for a while, and
a kernel nobody owns for a few seconds, so a page retrying a lost kernel costs one round of
questions, not one per retry. A forwarded request carries :data:`FORWARDED`; the receiving
replica never forwards it again (no loops, at most one hop).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from tornado import httputil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse

from ..runner.fetch import fetch
from .request_id import HEADER as REQUEST_ID
from .request_id import request_id

log = logging.getLogger("nbapps.server.peers")

#: the header that marks a request one replica forwarded to another (its value: the sender)
FORWARDED = "X-Nbapps-Forwarded"
#: request headers a forwarded request keeps (the viewer's credential and the browser's own)
_KEPT = ("Accept", "Accept-Language", "Authorization", "Content-Type", "Cookie", "Host",
         "Origin", "User-Agent", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site")


def checked_url(url: str) -> str:
    """``NbappsServer.internal_url`` as given, checked (``ValueError``: not http://host:port)."""
    text = url.strip().rstrip("/")
    if not text:
        return ""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None \
            or parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{url!r} is not http://host:port")
    return text


def listen_url(ip: str, port: int) -> str:
    """Where peers reach a replica listening on ``ip:port`` by default
    (``NbappsServer.internal_url`` overrides it): that address; for 0.0.0.0 or ``::``, the
    address of the machine's host name (a pod's IP in Kubernetes)."""
    host = ip
    if host in ("", "0.0.0.0", "::"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}"


def was_forwarded(request: httputil.HTTPServerRequest) -> bool:
    return FORWARDED in request.headers


class Peers:
    """This replica's entry in the registry, its view of the others, and where kernels are.

    The registry calls (``replica_heartbeat``, ``live_replicas``, ``forget_replica`` of the
    catalog) run off the event loop by ``run`` (the server's executor); the owner and absence
    memories live in this process.
    """

    #: seconds between two heartbeats
    interval: float = 5.0
    #: a replica silent for this long is not asked (a dead one, or one cut off)
    max_age: float = 20.0
    #: seconds a found owner is remembered (kernels do not move: only their end forgets them)
    owner_seconds: float = 600.0
    #: seconds a kernel nobody owns is remembered as gone
    absent_seconds: float = 10.0
    #: seconds one peer may take to answer whether it owns a kernel
    ask_timeout: float = 3.0

    def __init__(self, url: str, catalog: Any, run: Callable[..., Any],
                 http: Callable[[], AsyncHTTPClient | None]) -> None:
        self.id = secrets.token_hex(8)
        self.url = url.rstrip("/")
        self._catalog = catalog
        self._run = run
        self._http = http
        #: the other live replicas' addresses, from the last heartbeat round
        self.others: list[str] = []
        self._owners: dict[str, tuple[str, float]] = {}
        self._absent: dict[str, float] = {}
        #: requests passed on to a peer (for tests and metrics)
        self.forwarded = 0

    # -- the registry ----------------------------------------------------------------------
    async def heartbeat(self) -> None:
        """Say we are up and read who else is (a :class:`~.periodic.Periodic` round)."""
        await self._run(self._catalog.replica_heartbeat, self.id, self.url)
        live = await self._run(self._catalog.live_replicas, self.max_age)
        self.others = [r.url for r in live if r.id != self.id and r.url != self.url]

    async def leave(self) -> None:
        """This replica stops: the others stop asking it at once."""
        try:
            await self._run(self._catalog.forget_replica, self.id)
        except Exception as exc:  # noqa: BLE001 - its row goes stale by itself
            log.warning("could not leave the replica registry: %s", exc)

    # -- where a kernel is -----------------------------------------------------------------
    def headers(self, request: httputil.HTTPServerRequest) -> dict[str, str]:
        """The headers a request forwarded to a peer carries."""
        headers = {name: request.headers[name] for name in _KEPT if name in request.headers}
        headers[FORWARDED] = self.id
        headers["X-Forwarded-For"] = request.remote_ip or ""
        headers["X-Forwarded-Proto"] = request.protocol
        headers[REQUEST_ID] = request_id(request)
        return headers

    async def find(self, kernel_id: str, model_path: str, headers: Mapping[str, str]
                   ) -> tuple[str, HTTPResponse | None] | None:
        """The peer that owns ``kernel_id`` (its address) and, when it was asked just now, its
        answer to ``GET model_path`` (the kernel model); None when no live peer owns it."""
        now = time.monotonic()
        known = self._owners.get(kernel_id)
        if known is not None and known[1] > now and known[0] in self.others:
            return known[0], None
        if self._absent.get(kernel_id, 0.0) > now or not self.others:
            return None
        http = self._http()
        if http is None:
            return None
        asks = [asyncio.ensure_future(self._ask(http, peer, model_path, headers))
                for peer in self.others]
        found: tuple[str, HTTPResponse] | None = None
        for done in asyncio.as_completed(asks):
            answer = await done
            if answer is not None:
                found = answer
                break
        for ask in asks:  # the others answer 404 or time out by themselves: nobody waits
            ask.cancel()
        self._trim()
        if found is None:
            self._absent[kernel_id] = now + self.absent_seconds
            return None
        self._owners[kernel_id] = (found[0], now + self.owner_seconds)
        return found

    async def _ask(self, http: AsyncHTTPClient, peer: str, path: str,
                   headers: Mapping[str, str]) -> tuple[str, HTTPResponse] | None:
        request = HTTPRequest(peer + path, headers=dict(headers), follow_redirects=False,
                              connect_timeout=self.ask_timeout,
                              request_timeout=self.ask_timeout)
        try:
            response = await fetch(http, request, raise_error=False)
        except Exception as exc:  # noqa: BLE001 - a peer that is away owns nothing we can reach
            log.debug("asking %s about a kernel: %s", peer, exc)
            return None
        return (peer, response) if response.code == 200 else None

    def gone(self, kernel_id: str) -> None:
        """``kernel_id`` ended (shut down, or its owner stopped answering)."""
        self._owners.pop(kernel_id, None)

    def _trim(self) -> None:
        """Bounded memories: expired entries go, and everything past 10,000 entries."""
        now = time.monotonic()
        for memory in (self._owners, self._absent):
            if len(memory) > 10_000:
                memory.clear()
        for kernel, until in list(self._absent.items()):
            if until <= now:
                del self._absent[kernel]


__all__ = ["FORWARDED", "Peers", "checked_url", "listen_url", "was_forwarded"]
