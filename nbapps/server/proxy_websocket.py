"""The app proxy's WebSocket side: a page's kernel channels, both directions, closes propagated.

Only widget messages go from the viewer to the kernel (:data:`ALLOWED_KERNEL_MESSAGES`, the list
standalone Voilà enforces); a message larger than the runtime's ``max_message_size`` closes the
connection before it is read (tornado checks the frame's length). Mounted by
:func:`nbapps.server.proxy.proxy_routes`.

An open socket is authorized again every :attr:`AppWebSocketProxy.recheck_seconds` (the same
``authorize`` a new request passes, answered from the gallery's caches): when its viewer may no
longer open the app, e.g. the login session its ticket is bound to has ended (logout, new
password, an admin, a JupyterHub logout) or the account was disabled, the socket is closed with
1008 (policy violation). The page's widgets stop answering and its reconnection attempts are
refused (403) like every other request of that page; reloading the frame leads to the login page.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, ClassVar

from tornado import websocket
from tornado.httpclient import HTTPClientError, HTTPRequest

from ..errors import NbappsError
from ..runner.admission import Lease
from ..runner.process import Runner
from .proxy_shared import AppRequestMixin, ProxyConfig, authorized, clean_query
from .request_id import HEADER as REQUEST_ID
from .request_id import request_id

log = logging.getLogger("nbapps.server.proxy")

#: Kernel messages a page may send (the same list standalone Voilà enforces).
ALLOWED_KERNEL_MESSAGES = frozenset({
    "comm_open", "comm_msg", "comm_close", "comm_info_request", "kernel_info_request",
})


def kernel_message_type(message: str | bytes) -> str | None:
    """The ``msg_type`` of a kernel WebSocket message (JSON or the v1 binary protocol)."""
    try:
        if isinstance(message, bytes):
            count = int.from_bytes(message[:8], "little")
            if count < 3 or count > 1024:
                return None
            offsets = [int.from_bytes(message[8 * (i + 1): 8 * (i + 2)], "little")
                       for i in range(count)]
            header = json.loads(message[offsets[1]:offsets[2]].decode("utf-8"))
        else:
            header = json.loads(message).get("header", {})
        msg_type = header.get("msg_type") if isinstance(header, dict) else None
        return msg_type if isinstance(msg_type, str) else None
    except (ValueError, IndexError, AttributeError, UnicodeDecodeError):
        return None


class AppWebSocketProxy(AppRequestMixin, websocket.WebSocketHandler):
    """WebSocket side: the page's kernel channels, both directions, closes propagated."""

    #: seconds between two authorizations of an open socket (see the module docstring); 0: never
    recheck_seconds: ClassVar[float] = 5.0

    def initialize(self, config: ProxyConfig) -> None:
        self.config = config
        self.runtime = config.runtime
        self.observe = config.observe
        self._upstream: websocket.WebSocketClientConnection | None = None
        self._runner: Runner | None = None
        self._lease: Lease | None = None
        self._opened = False
        self._pump: asyncio.Future[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._t0 = time.perf_counter()
        self.dropped = 0
        self.app_ticket = None
        self.ticket_token = None

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.runtime.settings.runner.max_message_size

    @property
    def ping_interval(self) -> float | None:  # type: ignore[override]
        return 30.0

    def check_origin(self, origin: str) -> bool:
        """With a valid ticket any origin (the sandboxed page's is ``null``): the ticket is the
        credential. Without one (a cookie or token), only the gallery's own origin."""
        if self.app_ticket is not None:
            return True
        return super().check_origin(origin)

    async def prepare(self) -> None:
        slug = self.path_kwargs["slug"]
        kernel_id = self.path_kwargs["kernel_id"]
        if self.app_host_refused():  # another app's host, or no ticket on an app host
            self.set_status(404)
            self.finish("not found")
            return
        if not self._read_ticket():
            self.set_status(403)
            self.finish("ticket invalid or expired")
            return
        try:
            allowed = await authorized(self.config.authorize, self, slug)
        except NbappsError as err:
            allowed = False
            self.set_status(err.http_status)
        if not allowed:
            if not self._finished:
                if self.get_status() < 400:
                    self.set_status(403)
                self.finish("forbidden")
            return
        runner = self.runtime.runner_for(slug, kernel_id)
        found = await self.peer_of(kernel_id, runner)  # another replica's kernel (.peers)
        if found is not None:
            runner = None
        if runner is not None:
            url = runner.ws_url(f"api/kernels/{kernel_id}/channels",
                                clean_query(self.request.query))
            headers = {**runner.auth_headers, REQUEST_ID: request_id(self.request)}
        elif found is not None and self.config.peers is not None:
            peers = self.config.peers
            url = "ws" + found[0].removeprefix("http") + (self.request.uri or "")
            headers = peers.headers(self.request)
            peers.forwarded += 1
        else:  # no runner owns the kernel any more: it is gone
            self.set_status(404)
            self.finish("kernel not available")
            return
        protocols = [p.strip() for p in
                     self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if p.strip()]
        request = HTTPRequest(url, headers=headers, connect_timeout=10, request_timeout=30)
        try:
            self._upstream = await websocket.websocket_connect(
                request, subprotocols=protocols or None,
                max_message_size=self.max_message_size)
        except (HTTPClientError, OSError, websocket.WebSocketError) as exc:
            if runner is None and self.config.peers is not None:
                self.config.peers.gone(kernel_id)
            code = getattr(exc, "code", 503)
            self.set_status(404 if code == 404 else 503)
            self.finish("kernel not available")
            return
        if runner is not None:  # a forwarded socket: the owner counts it
            self._runner = runner
            self._lease = runner.hold("socket", self.viewer_key(), kernel_id)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self._upstream.selected_subprotocol if self._upstream else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._opened = True
        self._pump = asyncio.ensure_future(self._pump_upstream())
        if self.recheck_seconds > 0:
            self._watch = asyncio.ensure_future(self._recheck())

    async def _recheck(self) -> None:
        """Close the socket once its viewer may no longer open the app (a session ended)."""
        slug = self.path_kwargs.get("slug", "")
        while True:
            await asyncio.sleep(self.recheck_seconds)
            if self.ws_connection is None or self.ws_connection.is_closing():
                return
            try:
                allowed = await authorized(self.config.authorize, self, slug)
            except NbappsError as exc:
                if exc.http_status >= 500:  # the catalog is away (NBA313): not a refusal
                    log.warning("could not re-check a kernel socket of %s: %s", slug,
                                exc.message)
                    continue
                allowed = False  # the app is gone (404), the viewer may not (403)
            except Exception:  # a catalog hiccup: new requests fail too; look again later
                log.warning("could not re-check a kernel socket of %s", slug, exc_info=True)
                continue
            if not allowed:
                log.info("closed a kernel socket of %s: its viewer may no longer open it", slug)
                self.close(1008, "app page expired")
                return

    async def _pump_upstream(self) -> None:
        up = self._upstream
        if up is None:  # the viewer closed the socket before this task first ran
            return
        while True:
            msg = await up.read_message()
            if msg is None:
                break
            try:
                await self.write_message(msg, binary=isinstance(msg, bytes))
            except websocket.WebSocketClosedError:
                break
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            code = up.close_code if up.close_code not in (None, 1005, 1006) else 1000
            self.close(code, up.close_reason)

    async def on_message(self, message: str | bytes) -> None:
        msg_type = kernel_message_type(message)
        if msg_type not in ALLOWED_KERNEL_MESSAGES:
            self.dropped += 1
            log.warning("dropped a %r message from a viewer of %s", msg_type,
                        self.path_kwargs.get("slug"))
            return
        if self._upstream is not None:
            try:
                await self._upstream.write_message(message, binary=isinstance(message, bytes))
            except websocket.WebSocketClosedError:
                self.close(1011, "app connection lost")

    def on_close(self) -> None:
        self._release()

    def on_connection_close(self) -> None:
        super().on_connection_close()
        self._release()

    def _release(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and watch is not asyncio.current_task():
            watch.cancel()
        up, self._upstream = self._upstream, None
        if up is not None:
            code = self.close_code if self.close_code not in (None, 1005, 1006) else 1000
            up.close(code, self.close_reason)
        if self._runner is not None:
            if self._lease is not None:
                self._lease.release()
            self._runner = None
            if self.observe is not None:
                self.observe(self.path_kwargs.get("slug", ""), "ws", 101,
                             time.perf_counter() - self._t0)

    def on_finish(self) -> None:
        # prepare() refused or the handshake failed: do not leave an upstream connection open
        # (a successful handshake also "finishes" the HTTP request, with status 101)
        if self.get_status() != 101:
            self._release()


__all__ = ["ALLOWED_KERNEL_MESSAGES", "AppWebSocketProxy", "kernel_message_type"]
