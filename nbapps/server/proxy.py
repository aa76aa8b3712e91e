"""Reverse proxy from ``/apps/<slug>/…`` to the app's runner: HTTP (streamed) and WebSocket.

Mount it with one line (``runtime`` is the :class:`~nbapps.runner.supervisor.Supervisor`)::

    handlers += proxy_routes(runtime, authorize)

``authorize(handler, slug)`` (sync or async) is the gallery's decision: it returns True to let
the request through, or False (it may have answered already, e.g. redirected to the login page;
otherwise the proxy answers 403). It runs before anything is forwarded, for pages, assets,
kernel calls and WebSockets alike.

Only what an app page needs is forwarded (deny by default):

=====================================  ========  =============================================
``/apps/<slug>/``                       GET       the app page; ``?name=value`` checked against
                                                  the contract (400 page listing the parameters)
``voila/static|templates|labextensions  GET/HEAD  Voilà's and the widgets' assets
/api/themes/…``
``voila/files/…``                       GET/HEAD  images of the app (Voilà's allowlist applies)
``api/kernels/<id>``                    GET       the page's kernel model
``api/kernels/<id>/channels``           WS        the page's kernel connection (widget messages
                                                  only: other message types are dropped here
                                                  and refused by Voilà too)
``voila/api/shutdown/<id>``             POST      the page's kernel shutdown on unload
=====================================  ========  =============================================

Everything else (``/api/kernels`` listing, contents, tree, notebooks, ``.ipynb``, the
request-info socket, login…) is a 404 from the proxy itself. The runner's token is added by the
proxy (``Authorization`` header; the request-info is never forwarded) and never reaches the
browser: ``token`` query arguments are dropped, ``Set-Cookie`` is dropped, ``Location`` is
rewritten and HTML/JSON bodies are scrubbed. Because the proxy's requests are token-authenticated,
jupyter_server skips its XSRF check, which fixes Voilà's kernel shutdown on page close (403
without an ``_xsrf`` cookie in standalone Voilà); the proxy checks the Origin of that POST and of
WebSockets itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tornado import httputil, web, websocket
from tornado.httpclient import HTTPClientError, HTTPRequest

from ..errors import NbappsError, ParameterError
from ..runner import pages
from ..runner.notebook_variants import QUERY_KEY, encode_values
from ..runner.process import Runner
from ..runner.supervisor import RouteKind, Supervisor

log = logging.getLogger("nbapps.server.proxy")

SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
KERNEL = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ASSET = re.compile(r"voila/(?:static|templates|labextensions|api/themes|files)/[^\x00]*")
_KERNEL_MODEL = re.compile(rf"api/kernels/(?P<kernel>{KERNEL})")
_SHUTDOWN = re.compile(rf"voila/api/shutdown/(?P<kernel>{KERNEL})")
#: Query keys never forwarded to a runner (auth and Voilà's overrides).
_DROP_KEYS = {"token", "template", "theme"}
#: Kernel messages a page may send (the same list standalone Voilà enforces).
ALLOWED_KERNEL_MESSAGES = frozenset({
    "comm_open", "comm_msg", "comm_close", "comm_info_request", "kernel_info_request",
})
_REQUEST_HEADERS = (
    "Accept", "Accept-Language", "Cache-Control", "Content-Type", "If-Modified-Since",
    "If-None-Match", "User-Agent", "X-Requested-With",
)
_RESPONSE_HEADERS = {
    "content-type", "content-length", "cache-control", "etag", "last-modified", "expires",
    "pragma", "content-disposition", "content-security-policy", "x-content-type-options",
    "vary", "location", "retry-after",
}
_SCRUBBED_TYPES = ("text/html", "application/json", "text/plain")

Authorize = Callable[[web.RequestHandler, str], "bool | Awaitable[bool]"]
#: ``observe(slug, kind, status, seconds)``; kind is "page", "custom", "asset", "kernel", "ws"
Observer = Callable[[str, str, int, float], None]


def proxy_routes(
    runtime: Supervisor,
    authorize: Authorize,
    *,
    prefix: str = "/apps",
    observe: Observer | None = None,
    page_timeout: float = 900.0,
) -> list[tuple[str, type, dict[str, Any]]]:
    """The tornado routes of the proxy, to add to the gallery's handlers."""
    kwargs: dict[str, Any] = {"runtime": runtime, "authorize": authorize, "prefix": prefix,
                              "observe": observe, "page_timeout": page_timeout}
    base = prefix.rstrip("/")
    return [
        (rf"{base}/(?P<slug>{SLUG})/api/kernels/(?P<kernel_id>{KERNEL})/channels",
         AppWebSocketProxy, kwargs),
        (rf"{base}/(?P<slug>{SLUG})(?P<path>/.*)?", AppProxyHandler, kwargs),
    ]


async def _authorized(authorize: Authorize, handler: web.RequestHandler, slug: str) -> bool:
    result = authorize(handler, slug)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def _same_origin(handler: web.RequestHandler) -> bool:
    origin = handler.request.headers.get("Origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (handler.request.host or "").lower()


def _clean_query(query: str) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
             if k.lower() not in _DROP_KEYS]
    return urlencode(pairs)


class _Scrubber:
    """Removes a secret from a byte stream, also when the secret spans two chunks."""

    def __init__(self, secret: str) -> None:
        self.secret = secret.encode()
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        data = (self.tail + chunk).replace(self.secret, b"")
        self.tail = b""
        # hold back a tail that could be the start of the secret (rarely any)
        start = max(len(data) - len(self.secret) + 1, 0)
        at = data.find(self.secret[:1], start)
        while at != -1:
            if self.secret.startswith(data[at:]):
                data, self.tail = data[:at], data[at:]
                break
            at = data.find(self.secret[:1], at + 1)
        return data

    def close(self) -> bytes:
        out, self.tail = self.tail, b""
        return out


class AppProxyHandler(web.RequestHandler):
    """HTTP side of the proxy (pages, assets, kernel model and shutdown)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST")  # type: ignore[assignment]

    def initialize(self, runtime: Supervisor, authorize: Authorize, prefix: str,
                   observe: Observer | None, page_timeout: float) -> None:
        self.runtime = runtime
        self.authorize = authorize
        self.prefix = prefix.rstrip("/")
        self.observe = observe
        self.page_timeout = page_timeout
        self._t0 = time.perf_counter()
        self._kind = "asset"
        self._upstream_started = False
        self._scrubber: _Scrubber | None = None
        self._runner: Runner | None = None

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:
        """The only POST is the kernel shutdown beacon: its Origin is checked in :meth:`post`."""

    async def prepare(self) -> None:
        slug = self.path_kwargs["slug"]
        try:
            allowed = await _authorized(self.authorize, self, slug)
        except NbappsError as err:  # e.g. AuthRequired / PermissionDenied from the gallery
            if not self._finished:
                self._page(err.http_status, pages.forbidden_page())
            return
        if not allowed and not self._finished:
            self._page(403, pages.forbidden_page())

    # -- answers of our own ------------------------------------------------------------------
    def _page(self, status: int, body: str, retry_after: int | None = None) -> None:
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", pages.PAGE_CSP)
        if retry_after is not None:
            self.set_header("Retry-After", str(int(retry_after)))
        self.finish(body)

    def _not_found(self) -> None:
        self._page(404, pages.not_found_page("Nothing to see here."))

    def _unavailable(self, retry_after: int = 2) -> None:
        self._page(503, pages.unavailable_page(self.path_kwargs["slug"], retry_after),
                   retry_after)

    # -- routing -----------------------------------------------------------------------------
    async def get(self, slug: str, path: str | None = None) -> None:
        if path is None or path == "":
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(f"{self.prefix}/{slug}/{query}")
            return
        rel = path[1:]
        if rel == "":
            await self._app_page(slug)
            return
        m = _KERNEL_MODEL.fullmatch(rel)
        if m:
            self._kind = "kernel"
            await self._forward_to(slug, rel, kernel_id=m["kernel"], keep_query=False)
            return
        if _ASSET.fullmatch(rel) and ".." not in rel.split("/"):
            await self._forward_to(slug, rel, keep_query=True)
            return
        self._not_found()

    async def head(self, slug: str, path: str | None = None) -> None:
        rel = (path or "")[1:]
        if rel and _ASSET.fullmatch(rel) and ".." not in rel.split("/"):
            await self._forward_to(slug, rel, keep_query=True)
            return
        self._not_found()

    async def post(self, slug: str, path: str | None = None) -> None:
        rel = (path or "")[1:]
        m = _SHUTDOWN.fullmatch(rel)
        if not m:
            self._not_found()
            return
        if not _same_origin(self):
            self._page(403, pages.forbidden_page())
            return
        self._kind = "kernel"
        await self._forward_to(slug, rel, kernel_id=m["kernel"], keep_query=False,
                               method="POST", body=self.request.body or b"")

    async def _app_page(self, slug: str) -> None:
        self._kind = "page"
        route = await self.runtime.route(slug)
        if route.kind == RouteKind.MISSING:
            self._page(404, pages.not_found_page())
            return
        if route.kind == RouteKind.STARTING:
            self._page(503, pages.starting_page(route.title, route.retry_after),
                       route.retry_after)
            return
        if route.kind == RouteKind.BUSY:
            self._page(503, pages.busy_page(route.title, route.retry_after, route.reason),
                       route.retry_after)
            return
        if route.kind != RouteKind.READY or route.runner is None:
            self._page(503, pages.unavailable_page(route.title, route.retry_after,
                                                   route.reason), route.retry_after)
            return
        runner = route.runner
        info = runner.info
        assert info is not None
        raw: dict[str, str | list[str]] = {}
        for key, values in self.request.query_arguments.items():
            texts = [v.decode("utf-8", "replace") for v in values]
            raw[key] = texts[0] if len(texts) == 1 else texts
        values: dict[str, Any] = {}
        if raw:
            try:
                values = info.contract.coerce(raw)
            except ParameterError as err:
                problems = [d.get("message", "") for d in (err.details or [])] or [err.message]
                self._page(400, pages.bad_parameters_page(
                    route.title, problems, info.contract.to_dict(), f"{self.prefix}/{slug}/"))
                return
        defaults = info.contract.defaults()
        custom = {k: v for k, v in values.items()
                  if not (k in defaults and _same(v, defaults[k]))}
        query = ""
        if custom and info.has_custom:
            self._kind = "custom"
            query = f"{QUERY_KEY}={encode_values(values)}"
        url = runner.url(runner.variant_path(bool(query)), query)
        if runner.queued_renders >= runner.settings.max_queued_renders:
            self._page(503, pages.busy_page(route.title, route.retry_after * 3,
                                            "Too many people are opening it right now."),
                       route.retry_after * 3)
            return
        runner.queued_renders += 1
        entered = False
        try:
            # pool pages take milliseconds; when a burst has emptied the pool, at most
            # renders() pages start kernels at once and the others wait here for a slot
            async with runner.render_slots:
                entered = True
                runner.queued_renders -= 1
                await self._forward(runner, url)
        finally:
            if not entered:
                runner.queued_renders -= 1

    async def _forward_to(self, slug: str, rel: str, *, kernel_id: str | None = None,
                          keep_query: bool, method: str = "GET", body: bytes | None = None
                          ) -> None:
        runner = self.runtime.runner_for(slug, kernel_id)
        if runner is None:
            if not self.runtime.knows(slug) and kernel_id is None:
                self._not_found()
            else:
                self._unavailable()
            return
        query = _clean_query(self.request.query) if keep_query else ""
        await self._forward(runner, runner.url(rel, query), method=method, body=body)

    # -- forwarding --------------------------------------------------------------------------
    def _upstream_headers(self, runner: Runner) -> dict[str, str]:
        headers = {name: self.request.headers[name] for name in _REQUEST_HEADERS
                   if name in self.request.headers}
        headers.update(runner.auth_headers)
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        headers["X-Forwarded-Proto"] = self.request.protocol
        headers["X-Forwarded-Host"] = self.request.host or ""
        return headers

    async def _forward(self, runner: Runner, url: str, *, method: str = "GET",
                       body: bytes | None = None) -> None:
        http = self.runtime.http
        assert http is not None, "Supervisor.start() was not called"
        self._runner = runner
        self._status_line: httputil.ResponseStartLine | None = None
        self._resp_headers = httputil.HTTPHeaders()
        timeout = self.page_timeout if self._kind in ("page", "custom") else 120.0
        request = HTTPRequest(
            url, method=method, headers=self._upstream_headers(runner), body=body,
            follow_redirects=False, decompress_response=False, connect_timeout=10,
            request_timeout=timeout, header_callback=self._on_header_line,
            streaming_callback=self._on_chunk, allow_nonstandard_methods=True,
        )
        runner.active_requests += 1
        try:
            response = await http.fetch(request, raise_error=False)
        except (HTTPClientError, OSError, asyncio.TimeoutError) as exc:
            response = None
            log.warning("proxy %s: %s", url.split("?")[0], exc)
        finally:
            runner.active_requests -= 1
        if self._finished:
            return
        if not self._upstream_started:
            if response is not None and response.code != 599:
                self._start_response()
            else:
                self._unavailable()
                return
        if self._scrubber is not None:
            rest = self._scrubber.close()
            if rest:
                self.write(rest)
        with contextlib.suppress(Exception):  # the client may have gone away mid-stream
            self.finish().add_done_callback(_consume)

    def _on_header_line(self, line: str) -> None:
        if line.startswith("HTTP/"):
            self._status_line = httputil.parse_response_start_line(line.strip())
            self._resp_headers = httputil.HTTPHeaders()
            return
        if self._status_line is None:
            return
        if line.strip():
            self._resp_headers.parse_line(line)

    def _start_response(self) -> None:
        if self._upstream_started:
            return
        self._upstream_started = True
        status = self._status_line.code if self._status_line else 502
        self.clear()
        self.set_status(status, self._status_line.reason if self._status_line else None)
        scrub = any(t in self._resp_headers.get("Content-Type", "") for t in _SCRUBBED_TYPES)
        if scrub and self._runner is not None:
            self._scrubber = _Scrubber(self._runner.token)
        for name, value in self._resp_headers.get_all():
            low = name.lower()
            if low not in _RESPONSE_HEADERS:
                continue
            if low == "content-length" and (self._scrubber is not None
                                            or self.request.method == "HEAD"):
                continue
            if low == "location":
                value = self._rewrite_location(value)
            if low == "vary":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        if status in (204, 304):
            self.clear_header("Content-Type")

    def _rewrite_location(self, value: str) -> str:
        parts = urlsplit(value)
        query = _clean_query(parts.query)
        path = parts.path if parts.path.startswith(self.prefix + "/") else f"{self.prefix}/"
        return path + (f"?{query}" if query else "")

    def _on_chunk(self, chunk: bytes) -> None:
        if self._finished:
            return
        if not self._upstream_started:
            self._start_response()
        if self._scrubber is not None:
            chunk = self._scrubber.feed(chunk)
        if not chunk:
            return
        try:
            self.write(chunk)
            self.flush().add_done_callback(_consume)
        except Exception:  # client closed: keep reading upstream to release the runner
            pass

    def on_finish(self) -> None:
        if self.observe is not None:
            slug = self.path_kwargs.get("slug", "")
            try:
                self.observe(slug, self._kind, self.get_status(), time.perf_counter() - self._t0)
            except Exception:
                log.exception("proxy observer failed")


def _consume(future: Any) -> None:
    """Retrieve a flush's exception (a client that went away is not an error here)."""
    if not future.cancelled():
        future.exception()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


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


class AppWebSocketProxy(websocket.WebSocketHandler):
    """WebSocket side: the page's kernel channels, both directions, closes propagated."""

    def initialize(self, runtime: Supervisor, authorize: Authorize, prefix: str,
                   observe: Observer | None, page_timeout: float) -> None:
        self.runtime = runtime
        self.authorize = authorize
        self.observe = observe
        self._upstream: websocket.WebSocketClientConnection | None = None
        self._runner: Runner | None = None
        self._opened = False
        self._pump: asyncio.Future[None] | None = None
        self._t0 = time.perf_counter()
        self.dropped = 0

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.runtime.settings.runner.max_message_size

    @property
    def ping_interval(self) -> float | None:  # type: ignore[override]
        return 30.0

    async def prepare(self) -> None:
        slug = self.path_kwargs["slug"]
        kernel_id = self.path_kwargs["kernel_id"]
        try:
            allowed = await _authorized(self.authorize, self, slug)
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
        if runner is None:
            self.set_status(503)
            self.finish("app not running")
            return
        query = _clean_query(self.request.query)
        protocols = [p.strip() for p in
                     self.request.headers.get("Sec-WebSocket-Protocol", "").split(",")
                     if p.strip()]
        request = HTTPRequest(runner.ws_url(f"api/kernels/{kernel_id}/channels", query),
                              headers=runner.auth_headers, connect_timeout=10,
                              request_timeout=30)
        try:
            self._upstream = await websocket.websocket_connect(
                request, subprotocols=protocols or None,
                max_message_size=self.max_message_size)
        except (HTTPClientError, OSError, websocket.WebSocketError) as exc:
            code = getattr(exc, "code", 503)
            self.set_status(404 if code == 404 else 503)
            self.finish("kernel not available")
            return
        self._runner = runner
        runner.open_websockets += 1

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        chosen = self._upstream.selected_subprotocol if self._upstream else None
        return chosen if chosen in subprotocols else None

    def open(self, *args: Any, **kwargs: Any) -> None:
        self._opened = True
        self._pump = asyncio.ensure_future(self._pump_upstream())

    async def _pump_upstream(self) -> None:
        up = self._upstream
        assert up is not None
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
        up, self._upstream = self._upstream, None
        if up is not None:
            code = self.close_code if self.close_code not in (None, 1005, 1006) else 1000
            up.close(code, self.close_reason)
        if self._runner is not None:
            self._runner.open_websockets -= 1
            self._runner = None
            if self.observe is not None:
                self.observe(self.path_kwargs.get("slug", ""), "ws", 101,
                             time.perf_counter() - self._t0)

    def on_finish(self) -> None:
        # prepare() refused or the handshake failed: do not leave an upstream connection open
        # (a successful handshake also "finishes" the HTTP request, with status 101)
        if self.get_status() != 101:
            self._release()
