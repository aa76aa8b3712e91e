"""Reverse proxy from ``/apps/<slug>/…`` to the app's runner: HTTP (streamed) and WebSocket.

Mount it with one line (``runtime`` is the :class:`~nbapps.runner.supervisor.Supervisor`)::

    handlers += proxy_routes(runtime, authorize, tickets=AppTickets.from_secret(secret))

``authorize(handler, slug)`` (sync or async) is the gallery's decision: it returns True to let
the request through, or False (it may have answered already, e.g. redirected to the login page;
otherwise the proxy answers 403); it may raise :class:`~nbapps.errors.NotFound` (404). It runs
before anything is forwarded, for pages, assets, kernel calls and WebSockets alike. For a request
that carries an app ticket, the proxy has checked the ticket's signature, app and expiry first
and sets ``handler.app_ticket`` (:class:`~nbapps.server.app_tickets.Ticket`); the gallery then
checks that the viewer it names may still open the app and, for a ticket bound to a login
session, that the session is still live (NBA340: the expired page, like an expired ticket).

**Isolation** (:mod:`nbapps.server.app_isolation`): every response is sandboxed by its CSP, so
app code runs in an opaque origin and cannot use the viewer's gallery session. Such a page sends
no cookie, so a browser opens an app through a ticket URL, ``/apps/<slug>/~t/<ticket>/``: the
proxy checks and strips the ticket and rewrites the page's own URLs (Voilà's ``baseUrl``, script
and style links) to keep it, so every request of the page (assets, kernel model, the kernel
WebSocket, the unload beacon) carries it. A browser navigating to ``/apps/<slug>/?params`` is
redirected to the gallery's app frame (``frame_url``), which embeds the ticket URL; scripts and
benchmarks reading ``/apps/<slug>/`` with a cookie or an API token get the page as before.

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
``~status`` (ticket paths)              GET       where the app is on its way (JSON of
                                                  :mod:`.app_status`; the app frame's progress)
(ticket paths)                          OPTIONS   CORS preflight of the sandboxed page
=====================================  ========  =============================================

Everything else (``/api/kernels`` listing, contents, tree, notebooks, ``.ipynb``, the
request-info socket, login…) is a 404 from the proxy itself. The runner's token is added by the
proxy (``Authorization`` header; the request-info is never forwarded) and never reaches the
browser: ``token`` query arguments are dropped, ``Set-Cookie`` is dropped, ``Location`` is
rewritten and HTML/JSON bodies are scrubbed. Because the proxy's requests are token-authenticated,
jupyter_server skips its XSRF check, which fixes Voilà's kernel shutdown on page close (403
without an ``_xsrf`` cookie in standalone Voilà); the proxy checks the Origin of that POST and of
WebSockets itself (any origin with a valid ticket: the sandboxed page's origin is ``null``).

A page request while the runner starts gets the waiting page (503, its steps, reloading itself);
a ticket request (the app frame's iframe) is first held up to ``start_hold`` seconds, so it turns
into the app as soon as the runner is ready. A runner is only ever started by a page request,
never by an asset, kernel or socket request.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from typing import Any
from urllib.parse import urlsplit

from tornado import httputil, web
from tornado.httpclient import HTTPClientError, HTTPRequest

from ..contract import query_texts
from ..errors import NbappsError, ParameterError
from ..previews import KEY_PATTERN as PREVIEW_KEY
from ..runner.admission import RunnerBusy
from ..runner.fetch import fetch
from ..runner.notebook_variants import QUERY_KEY, encode_values
from ..runner.process import Runner
from ..runner.supervisor import Route, RouteKind, Supervisor
from .app_assets import CachedAsset
from .app_isolation import (
    APP_ASSET_CSP,
    APP_NOTICE_CSP,
    COMMON_HEADERS,
    TICKET_CORS,
    csp_for,
    navigation_destination,
    on_app_origin,
)
from .app_origins import AppOrigins
from .app_pages import AppPages
from .app_status import AppStatus, app_status, failure_reference
from .app_tickets import SEGMENT, STATUS_PATH, AppTickets
from .asset_warmup import RememberedAssets, warm_soon
from .peers import Peers
from .proxy_shared import (
    KERNEL,
    AppRequestMixin,
    Authorize,
    FrameUrl,
    Observer,
    ProxyConfig,
    authorized,
    clean_query,
    same_origin,
)
from .proxy_websocket import AppWebSocketProxy
from .request_id import HEADER as REQUEST_ID
from .request_id import request_id
from .stream_rewrite import Chain, Replacer, Scrubber, scrubbed

log = logging.getLogger("nbapps.server.proxy")

SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
#: a runtime key: an app slug, or a preview key ``~v<version id>`` (:mod:`nbapps.previews`)
KEY = rf"(?:{SLUG}|{PREVIEW_KEY})"
_TICKET_PART = rf"(?:/{re.escape(SEGMENT)}/(?P<ticket>[^/]*))?"
_ASSET = re.compile(r"voila/(?:static|templates|labextensions|api/themes|files)/[^\x00]*")
_KERNEL_MODEL = re.compile(rf"api/kernels/(?P<kernel>{KERNEL})")
_SHUTDOWN = re.compile(rf"voila/api/shutdown/(?P<kernel>{KERNEL})")
#: where a Voilà page names its kernel, and how far into the page we look for it
_KERNEL_IN_PAGE = re.compile(rb'"kernelId":\s*"(' + KERNEL.encode() + rb')"')
_KERNEL_SCAN = 256 * 1024
_REQUEST_HEADERS = (
    "Accept", "Accept-Language", "Cache-Control", "Content-Type", "If-Modified-Since",
    "If-None-Match", "User-Agent", "X-Requested-With",
)
#: upstream headers passed on (the runner's own CSP is replaced by ours)
_RESPONSE_HEADERS = {
    "content-type", "content-length", "cache-control", "etag", "last-modified", "expires",
    "pragma", "content-disposition", "vary", "location", "retry-after",
}


def proxy_routes(
    runtime: Supervisor,
    authorize: Authorize,
    *,
    prefix: str = "/apps",
    observe: Observer | None = None,
    page_timeout: float = 900.0,
    tickets: AppTickets | None = None,
    pages: AppPages | None = None,
    frame_url: FrameUrl | None = None,
    start_hold: float = 20.0,
    origins: AppOrigins | None = None,
    remembered: RememberedAssets | None = None,
    peers: Peers | None = None,
) -> list[tuple[str, type, dict[str, Any]]]:
    """The tornado routes of the proxy, to add to the gallery's handlers.

    ``tickets`` signs and checks app tickets (default: a key of this process only);
    ``pages`` renders the proxy's own pages (default: the built-in templates); ``frame_url``
    is where a browser opening ``/apps/<slug>/`` is sent (default: straight to a ticket URL);
    ``origins``: apps on hosts of their own (:mod:`.app_origins`; mount the same routes for
    those hosts); ``remembered``: the shared assets earlier pages asked for
    (:mod:`.asset_warmup`; default: none, kept in memory only); ``peers``: the other gallery
    replicas, asked for kernels this one does not own (:mod:`.peers`; default: none).
    """
    config = ProxyConfig(runtime, authorize, prefix.rstrip("/"), observe, page_timeout,
                         tickets or AppTickets(), pages or AppPages(), frame_url, start_hold,
                         origins=origins, remembered=remembered or RememberedAssets(None),
                         peers=peers)
    # a starting runner fills the gallery's memory of shared assets before its first page
    runtime.starting_hooks.append(lambda runner: warm_soon(
        runner, config.assets, config.remembered, runtime.http))
    kwargs: dict[str, Any] = {"config": config}
    base = config.prefix
    return [
        (rf"{base}/(?P<slug>{KEY}){_TICKET_PART}/api/kernels/(?P<kernel_id>{KERNEL})/channels",
         AppWebSocketProxy, kwargs),
        (rf"{base}/(?P<slug>{KEY}){_TICKET_PART}(?P<path>/.*)?", AppProxyHandler, kwargs),
    ]


class AppProxyHandler(AppRequestMixin, web.RequestHandler):
    """HTTP side of the proxy (pages, assets, kernel model and shutdown)."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")  # type: ignore[assignment]

    def initialize(self, config: ProxyConfig) -> None:
        self.config = config
        self.runtime = config.runtime
        self.prefix = config.prefix
        self._t0 = time.perf_counter()
        self._kind = "asset"
        self._rel = ""
        self._upstream_started = False
        self._filter: Replacer | Chain | None = None
        self._runner: Runner | None = None
        self._client_gone = False
        self._capture: list[bytes] | None = None
        self._captured = 0
        self._page_handle = 0  # the admitted page, until its kernel id is read (viewer_pages)
        self._page_head = b""
        self.app_ticket = None
        self.ticket_token = None

    def set_default_headers(self) -> None:
        for name, value in COMMON_HEADERS.items():
            self.set_header(name, value)
        self.set_header("Content-Security-Policy", APP_ASSET_CSP)
        if getattr(self, "ticket_token", None):
            for name, value in TICKET_CORS.items():
                self.set_header(name, value)

    def check_xsrf_cookie(self) -> None:
        """The only POST is the kernel shutdown beacon: its Origin is checked in :meth:`post`."""

    def check_trusted_origin(self, origin: str) -> bool:
        """Same: the beacon's Origin (``null`` from a sandboxed page) is checked in :meth:`post`
        (a valid ticket, or the gallery's own origin)."""
        return True

    def on_connection_close(self) -> None:
        self._client_gone = True
        super().on_connection_close()

    def set_header(self, name: str, value: Any) -> None:
        """Every CSP of an app host's answer names the gallery as the page's framer."""
        if name == "Content-Security-Policy" and self.framing_origin:
            value = on_app_origin(str(value), self.framing_origin)
        super().set_header(name, value)

    async def prepare(self) -> None:
        slug = self.path_kwargs["slug"]
        if self.app_host_refused():
            self._not_found()
            return
        self.set_header("Content-Security-Policy", APP_ASSET_CSP)
        if not self._read_ticket():
            self._page(403, self.config.pages.expired())
            return
        self.set_default_headers()  # again: CORS headers now that the ticket is known
        if self.request.method == "OPTIONS":
            return
        if self._to_frame():
            return
        try:
            allowed = await authorized(self.config.authorize, self, slug)
        except NbappsError as err:  # AuthRequired / PermissionDenied / NotFound
            if not self._finished:
                if err.http_status == 404:
                    self._page(404, self.config.pages.not_found())
                elif err.code == "NBA340":  # a ticket whose login session has ended
                    self._page(403, self.config.pages.expired())
                elif err.http_status in (409, 410):  # a preview that ended or cannot run
                    self._page(err.http_status, self.config.pages.notice(
                        "Preview not available", err.message, code=err.code))
                else:
                    self._page(err.http_status, self.config.pages.forbidden())
            return
        if not allowed and not self._finished:
            self._page(403, self.config.pages.forbidden())

    def _to_frame(self) -> bool:
        """A browser opening ``/apps/<slug>/`` itself goes to the gallery's app frame."""
        path = self.path_kwargs.get("path")
        if (self.app_ticket is not None or self.config.frame_url is None
                or self.request.method != "GET" or path not in (None, "", "/")
                or navigation_destination(self.request) != "document"):
            return False
        self.redirect(self.config.frame_url(self.path_kwargs["slug"], self.request.query))
        return True

    # -- answers of our own ------------------------------------------------------------------
    def _page(self, status: int, body: str, retry_after: int | None = None) -> None:
        self.clear()
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Content-Security-Policy", APP_NOTICE_CSP)
        if retry_after is not None:
            self.set_header("Retry-After", str(int(retry_after)))
        self.finish(body)

    def _not_found(self) -> None:
        self._page(404, self.config.pages.notice("Not found", "Nothing to see here.",
                                                 code="NBA302"))

    def _unavailable(self, retry_after: int = 2) -> None:
        slug = self.path_kwargs["slug"]
        status = AppStatus("unavailable", slug, "The app is not running right now.",
                           reference=failure_reference(slug, "no runner for an app request"),
                           retry_after=retry_after)
        self._page(503, self.config.pages.wait(status, retry_after), retry_after)

    async def _wait_page(self, route: Route) -> None:
        slug = self.path_kwargs["slug"]
        if route.kind == RouteKind.STARTING:
            status = await app_status(self.runtime, slug, route.title)
            if status.state not in ("starting", "stopped"):
                status = AppStatus("starting", route.title, "Starting", step=1)
        elif route.kind == RouteKind.BUSY:
            status = AppStatus("busy", route.title, route.reason or "It is busy.",
                               retry_after=route.retry_after, place=route.place)
        else:
            status = AppStatus("unavailable", route.title,
                               "The app failed to start; it is being restarted.",
                               reference=failure_reference(slug, route.reason),
                               retry_after=route.retry_after)
        self._page(503, self.config.pages.wait(status, route.retry_after), route.retry_after)

    # -- routing -----------------------------------------------------------------------------
    async def options(self, slug: str, ticket: str | None = None,
                      path: str | None = None) -> None:
        if self.app_ticket is None:
            self._not_found()
            return
        self.set_status(204)
        self.finish()

    async def get(self, slug: str, ticket: str | None = None, path: str | None = None) -> None:
        if path is None or path == "":
            query = f"?{self.request.query}" if self.request.query else ""
            self.redirect(f"{self.app_base()}{query}")
            return
        rel = path[1:]
        if rel == "":
            await self._app_page(slug)
            return
        if rel == STATUS_PATH and self.app_ticket is not None:
            await self._status(slug)
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

    async def head(self, slug: str, ticket: str | None = None, path: str | None = None) -> None:
        rel = (path or "")[1:]
        if rel and _ASSET.fullmatch(rel) and ".." not in rel.split("/"):
            await self._forward_to(slug, rel, keep_query=True)
            return
        self._not_found()

    async def post(self, slug: str, ticket: str | None = None, path: str | None = None) -> None:
        rel = (path or "")[1:]
        m = _SHUTDOWN.fullmatch(rel)
        if not m:
            self._not_found()
            return
        if self.app_ticket is None and not same_origin(self):
            self._page(403, self.config.pages.forbidden())
            return
        self._kind = "kernel"
        runner = self.runtime.runner_for(slug, m["kernel"])
        if runner is not None:  # the page is closing: its kernel no longer counts for its viewer
            runner.pages.end_kernel(m["kernel"])
        await self._forward_to(slug, rel, kernel_id=m["kernel"], keep_query=False,
                               method="POST", body=self.request.body or b"")

    async def _status(self, slug: str) -> None:
        """The app frame's progress poll, on the page's ticket path so that a load balancer
        hashing on the ticket sends it to the replica that starts the page's runner (the
        gallery's ``api/apps/<slug>/status`` could be answered by any replica). Reads only."""
        self._kind = "status"
        status = await app_status(self.runtime, slug, slug)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(status.to_dict()))

    async def _route(self, slug: str) -> Route:
        """Where the page goes; a ticket request waits (up to ``start_hold``) for a start."""
        viewer, place = self.viewer_key(), self.place_key()
        route = await self.runtime.route(slug, viewer, place)
        if self.app_ticket is None or route.kind != RouteKind.STARTING:
            return route
        deadline = time.monotonic() + self.config.start_hold
        while route.kind == RouteKind.STARTING and not self._client_gone:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            slot = await self.runtime.slot_for(slug)
            task = slot.starting if slot is not None else None
            if task is not None and not task.done():
                await asyncio.wait({task}, timeout=left)
            else:  # between two states (e.g. a restart after its backoff): look again soon
                await asyncio.sleep(min(0.1, left))
            route = await self.runtime.route(slug, viewer, place)
        return route

    def _to_ticket_url(self, slug: str) -> bool:
        """A browser navigation without a ticket (an iframe, or no gallery frame) goes to the
        ticket URL of the same page: the sandboxed page sends no cookie, its URL must carry
        its credential."""
        if self.app_ticket is not None or navigation_destination(self.request) is None:
            return False
        viewer = getattr(self, "app_viewer", None)
        token = self.config.tickets.issue(slug, str(getattr(viewer, "name", "") or ""),
                                          int(getattr(viewer, "id", 0) or 0),
                                          session_hash=getattr(self, "app_session", "") or "")
        query = f"?{self.request.query}" if self.request.query else ""
        self.redirect(f"{self.prefix}/{slug}/{SEGMENT}/{token}/{query}")
        return True

    async def _app_page(self, slug: str) -> None:
        self._kind = "page"
        if self._to_ticket_url(slug):
            return
        route = await self._route(slug)
        if self._client_gone:
            return
        if route.kind == RouteKind.MISSING:
            self._page(404, self.config.pages.not_found())
            return
        if route.kind != RouteKind.READY or route.runner is None:
            await self._wait_page(route)
            return
        runner = route.runner
        info = runner.info
        assert info is not None
        raw = query_texts(self.request.query_arguments)
        values: dict[str, Any] = {}
        if raw:
            try:
                values = info.contract.coerce(raw)
            except ParameterError as err:
                self._page(400, self.config.pages.bad_parameters(
                    route.title, err.messages, info.contract.to_dict(), self.app_base(),
                    code=err.code))
                return
        defaults = info.contract.defaults()
        custom = {k: v for k, v in values.items()
                  if not (k in defaults and _same(v, defaults[k]))}
        query = ""
        if custom and info.has_custom:
            self._kind = "custom"
            query = f"{QUERY_KEY}={encode_values(values)}"
        url = runner.url(runner.variant_path(bool(query)), query)
        try:
            # pool pages take milliseconds; when a burst has emptied the pool, at most
            # renders() pages start kernels at once and the others wait in the runner's queue
            slot = await runner.render_slot()
        except RunnerBusy:
            await self._wait_page(Route(RouteKind.BUSY, title=route.title,
                                        retry_after=route.retry_after * 3,
                                        reason="Too many people are opening it right now."))
            return
        self._page_handle = route.page
        async with slot:
            await self._forward(runner, url, rel="")

    async def _forward_to(self, slug: str, rel: str, *, kernel_id: str | None = None,
                          keep_query: bool, method: str = "GET", body: bytes | None = None
                          ) -> None:
        key = None
        if kernel_id is None and method == "GET":
            key = self.config.assets.key(rel, clean_query(self.request.query))
            cached = self.config.assets.get(key) if key is not None else None
            if cached is not None:
                self._send_cached(rel, cached)
                return
        runner = self.runtime.runner_for(slug, kernel_id)
        if kernel_id is not None and await self._from_peer(runner, kernel_id, rel, method,
                                                           body):
            return  # another replica's kernel (this one may run the app too)
        if runner is None:
            # a kernel no runner here or on a peer owns is gone (its runner stopped or was
            # replaced): not a failure to report, and no other answer would bring it back
            if kernel_id is not None or not self.runtime.knows(slug):
                self._not_found()
            else:
                self._unavailable()
            return
        query = clean_query(self.request.query) if keep_query else ""
        if key is not None:
            self._capture = []
        await self._forward(runner, runner.url(rel, query), rel=rel, method=method, body=body)
        if key is not None and self._capture is not None and self.get_status() == 200:
            self.config.assets.put(key, list(self._headers.get_all()), b"".join(self._capture))
            self.config.remembered.note(key)

    async def _from_peer(self, runner: Runner | None, kernel_id: str, rel: str, method: str,
                         body: bytes | None) -> bool:
        """Answer a request about a kernel another replica owns with that replica's answer
        (:mod:`.peers`); False when ``runner`` owns it or no peer does."""
        found = await self.peer_of(kernel_id, runner)
        if found is None or self._client_gone:
            return False
        peer, answer = found
        peers = self.config.peers
        assert peers is not None and self.runtime.http is not None
        if answer is None or method != "GET":
            request = HTTPRequest(peer + (self.request.uri or ""), method=method,
                                  headers=peers.headers(self.request), body=body,
                                  follow_redirects=False, connect_timeout=5,
                                  request_timeout=30, allow_nonstandard_methods=True)
            try:
                answer = await fetch(self.runtime.http, request, raise_error=False)
            except Exception as exc:  # noqa: BLE001 - the owner went away meanwhile
                log.warning("forwarding a kernel request to %s: %s", peer, exc)
                peers.gone(kernel_id)
                return False
        peers.forwarded += 1
        if method == "POST" and answer.code < 400:  # the page closed: its kernel is ending
            peers.gone(kernel_id)
        self.set_status(answer.code, answer.reason)
        content_type = answer.headers.get("Content-Type", "")
        for name in ("Content-Type", "Cache-Control"):
            if name in answer.headers:
                self.set_header(name, answer.headers[name])
        self.set_header("Content-Security-Policy", csp_for(rel, content_type))
        if answer.code in (204, 304):
            self.clear_header("Content-Type")
            self.finish()
        else:
            self.finish(answer.body or b"")
        return True

    def _send_cached(self, rel: str, asset: CachedAsset) -> None:
        for name, value in asset.headers:
            self.set_header(name, value)
        self.set_header("Content-Security-Policy", csp_for(rel, dict(asset.headers).get(
            "Content-Type", "")))
        if "Cache-Control" not in dict(asset.headers):
            self.clear_header("Cache-Control")
        body = asset.body
        if asset.gzipped is not None:
            self.set_header("Vary", "Accept-Encoding")
            if "gzip" in self.request.headers.get("Accept-Encoding", ""):
                self.set_header("Content-Encoding", "gzip")
                body = asset.gzipped
        self.finish(body)

    # -- forwarding --------------------------------------------------------------------------
    def _upstream_headers(self, runner: Runner) -> dict[str, str]:
        headers = {name: self.request.headers[name] for name in _REQUEST_HEADERS
                   if name in self.request.headers}
        headers.update(runner.auth_headers)
        headers["X-Forwarded-For"] = self.request.remote_ip or ""
        headers["X-Forwarded-Proto"] = self.request.protocol
        headers["X-Forwarded-Host"] = self.request.host or ""
        headers[REQUEST_ID] = request_id(self.request)  # joins the runner's log line to ours
        return headers

    async def _forward(self, runner: Runner, url: str, *, rel: str, method: str = "GET",
                       body: bytes | None = None) -> None:
        http = self.runtime.http
        assert http is not None, "Supervisor.start() was not called"
        self._runner = runner
        self._rel = rel
        self._status_line: httputil.ResponseStartLine | None = None
        self._resp_headers = httputil.HTTPHeaders()
        timeout = self.config.page_timeout if self._kind in ("page", "custom") else 120.0
        request = HTTPRequest(
            url, method=method, headers=self._upstream_headers(runner), body=body,
            follow_redirects=False, decompress_response=False, connect_timeout=10,
            request_timeout=timeout, header_callback=self._on_header_line,
            streaming_callback=self._on_chunk, allow_nonstandard_methods=True,
        )
        with runner.hold("request"):
            try:
                response = await http.fetch(request, raise_error=False)
            except (HTTPClientError, OSError, asyncio.TimeoutError) as exc:
                response = None
                log.warning("proxy %s: %s", url.split("?")[0], exc)
        if self._finished:
            return
        if not self._upstream_started:
            if response is not None and response.code != 599:
                self._start_response()
            else:
                self._unavailable()
                return
        if self._filter is not None:
            rest = self._filter.close()
            if rest:
                self._keep(rest)
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
        content_type = self._resp_headers.get("Content-Type", "")
        steps: list[Replacer] = []
        if scrubbed(content_type) and self._runner is not None:
            steps.append(Scrubber(self._runner.token))
        if self.ticket_token and self._rel == "" and content_type.startswith("text/html"):
            # the page's own URLs (baseUrl, scripts, styles) keep the ticket
            base = f"{self.prefix}/{self.path_kwargs['slug']}/"
            steps.append(Replacer(base, self.app_base()))
        self._filter = steps[0] if len(steps) == 1 else Chain(steps) if steps else None
        if self._kind == "asset":
            # scripts, styles, fonts and the app's images may be cached by the browser (the
            # runner says how long; without a Cache-Control its Last-Modified/ETag still let
            # the browser reuse them); pages and kernel answers never are
            self.clear_header("Cache-Control")
        for name, value in self._resp_headers.get_all():
            low = name.lower()
            if low not in _RESPONSE_HEADERS:
                continue
            if low == "content-length" and (self._filter is not None
                                            or self.request.method == "HEAD"):
                continue
            if low == "location":
                value = self._rewrite_location(value)
            if low == "vary":
                self.add_header(name, value)
            else:
                self.set_header(name, value)
        self.set_header("Content-Security-Policy", csp_for(self._rel, content_type))
        if status in (204, 304):
            self.clear_header("Content-Type")

    def _rewrite_location(self, value: str) -> str:
        parts = urlsplit(value)
        query = clean_query(parts.query)
        base = f"{self.prefix}/{self.path_kwargs['slug']}/"
        path = parts.path if parts.path.startswith(self.prefix + "/") else f"{self.prefix}/"
        if self.ticket_token and path.startswith(base):
            path = self.app_base() + path[len(base):]
        return path + (f"?{query}" if query else "")

    def _on_chunk(self, chunk: bytes) -> None:
        if self._finished:
            return
        if not self._upstream_started:
            self._start_response()
        if self._filter is not None:
            chunk = self._filter.feed(chunk)
        if not chunk:
            return
        if self._page_handle:
            self._find_kernel(chunk)
        self._keep(chunk)
        try:
            self.write(chunk)
            self.flush().add_done_callback(_consume)
        except Exception:  # client closed: keep reading upstream to release the runner
            pass

    def _find_kernel(self, chunk: bytes) -> None:
        """Read the page's kernel id from its first bytes (it is in Voilà's page config), so
        the viewer's page count follows that kernel (nbapps.runner.viewer_pages)."""
        start = max(len(self._page_head) - 128, 0)  # a match may span two chunks
        self._page_head += chunk
        m = _KERNEL_IN_PAGE.search(self._page_head, start)
        if m is not None and self._runner is not None:
            self._runner.pages.bind(self._page_handle, m.group(1).decode())
            self._page_handle = 0
        if m is not None or len(self._page_head) > _KERNEL_SCAN:
            self._page_handle = 0  # found, or not in the page's head: counts until culled
            self._page_head = b""

    def _keep(self, chunk: bytes) -> None:
        """Keep a copy of what is sent, for the asset cache (up to its item size)."""
        if self._capture is None:
            return
        self._captured += len(chunk)
        if self._captured <= self.config.assets.max_item:
            self._capture.append(chunk)
        else:
            self._capture = None

    def on_finish(self) -> None:
        observe = self.config.observe
        if observe is not None:
            slug = self.path_kwargs.get("slug", "")
            try:
                observe(slug, self._kind, self.get_status(), time.perf_counter() - self._t0)
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


