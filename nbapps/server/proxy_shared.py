"""What both app proxy handlers share: their configuration, the ticket check and the gallery's
authorization (:mod:`nbapps.server.proxy` for HTTP, :mod:`nbapps.server.proxy_websocket` for the
kernel WebSocket)."""
from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tornado import httputil, web

from ..runner.process import Runner
from ..runner.supervisor import Supervisor
from .app_assets import AssetCache
from .app_origins import AppOrigins
from .app_pages import AppPages
from .app_tickets import SEGMENT, AppTickets, Ticket, redact
from .asset_warmup import RememberedAssets
from .peers import Peers, was_forwarded

KERNEL = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
#: Query keys never forwarded to a runner (auth and Voilà's overrides).
DROP_KEYS = {"token", "template", "theme"}

Authorize = Callable[[web.RequestHandler, str], "bool | Awaitable[bool]"]
#: ``observe(slug, kind, status, seconds)``; kind is "page", "custom", "asset", "kernel", "ws"
Observer = Callable[[str, str, int, float], None]
#: ``frame_url(slug, query)``: the gallery page that frames the app (browser navigations)
FrameUrl = Callable[[str, str], str]


@dataclass
class ProxyConfig:
    """What both proxy handlers share (one value per mounted proxy)."""

    runtime: Supervisor
    authorize: Authorize
    prefix: str = "/apps"
    observe: Observer | None = None
    page_timeout: float = 900.0
    tickets: AppTickets = field(default_factory=AppTickets)
    pages: AppPages = field(default_factory=AppPages)
    frame_url: FrameUrl | None = None
    #: seconds a ticket page request waits for a starting runner before the waiting page
    start_hold: float = 20.0
    #: Voilà's scripts and styles, shared by every app (see :mod:`.app_assets`)
    assets: AssetCache = field(default_factory=AssetCache)
    #: apps on origins of their own (:mod:`.app_origins`); None: the sandbox only
    origins: AppOrigins | None = None
    #: which shared assets pages asked for, fetched from a starting runner (:mod:`.asset_warmup`)
    remembered: RememberedAssets = field(default_factory=lambda: RememberedAssets(None))
    #: the other gallery replicas, asked for kernels this one does not own (:mod:`.peers`)
    peers: Peers | None = None


async def authorized(authorize: Authorize, handler: web.RequestHandler, slug: str) -> bool:
    result = authorize(handler, slug)
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


def same_origin(handler: web.RequestHandler) -> bool:
    origin = handler.request.headers.get("Origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == (handler.request.host or "").lower()


def clean_query(query: str) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
             if k.lower() not in DROP_KEYS]
    return urlencode(pairs)


class AppRequestMixin:
    """Ticket check and the gallery's authorization, shared by both handlers."""

    config: ProxyConfig
    app_ticket: Ticket | None
    ticket_token: str | None
    #: the gallery origin that frames this app host's pages (None: not an app host)
    framing_origin: str | None = None
    request: httputil.HTTPServerRequest
    path_kwargs: dict[str, str]

    def _read_ticket(self) -> bool:
        """Check the path's ticket (if any); False if there is one and it is not valid."""
        self.app_ticket = None
        self.ticket_token = None
        token = self.path_kwargs.get("ticket")
        if token is None:
            return True
        ticket = self.config.tickets.verify(token, self.path_kwargs["slug"])
        if ticket is None:
            return False
        self.app_ticket, self.ticket_token = ticket, token
        return True

    def app_host_refused(self) -> bool:
        """On an app's own host (:mod:`.app_origins`): True when this request is not one of
        that app's ticket URLs (it must then get a 404); sets :attr:`framing_origin`."""
        self.framing_origin = None
        origins = self.config.origins
        host_slug = origins.slug_of(self.request) if origins is not None else None
        if origins is None or host_slug is None:
            return False
        self.framing_origin = origins.framing_origin(self.request)
        return host_slug != self.path_kwargs["slug"] or self.path_kwargs.get("ticket") is None

    def viewer_key(self) -> str | None:
        """Who asks, for the per-viewer bound: the account (None: anonymous viewers cannot be
        told apart, behind a proxy not even by address; the app's cap bounds them)."""
        viewer = getattr(self, "app_viewer", None)
        user_id = int(getattr(viewer, "id", 0) or 0)
        return f"user:{user_id}" if user_id else None

    def place_key(self) -> str | None:
        """The key of this page's place in the app's queue: its ticket (one per page load in
        the gallery's frame, so reloading the waiting page keeps the place)."""
        if self.ticket_token is None:
            return None
        return hashlib.sha256(self.ticket_token.encode()).hexdigest()[:32]

    async def peer_of(self, kernel_id: str, runner: Runner | None
                      ) -> tuple[str, Any] | None:
        """The other replica that owns ``kernel_id`` and, if it was just asked, its answer
        to the kernel model (:meth:`.peers.Peers.find`); None: nobody to forward to (``runner``,
        this replica's runner for the request, owns it; no peers; a request forwarded already;
        or no live peer owns it). ``runner`` may be the app's live runner that does not own
        the kernel (``Supervisor.runner_for`` falls back to it)."""
        peers = self.config.peers
        if peers is None or not peers.others or was_forwarded(self.request):
            return None
        if runner is not None and runner.owns_kernel(kernel_id):
            return None
        return await peers.find(kernel_id, f"{self.app_base()}api/kernels/{kernel_id}",
                                peers.headers(self.request))

    def app_base(self) -> str:
        """The app's base path as this request sees it (with its ticket, if any)."""
        base = f"{self.config.prefix}/{self.path_kwargs['slug']}/"
        return f"{base}{SEGMENT}/{self.ticket_token}/" if self.ticket_token else base

    def _request_summary(self) -> str:  # tornado's log line of errors: no ticket in logs
        return f"{self.request.method} {redact(self.request.uri or '')} " \
               f"({self.request.remote_ip})"


__all__ = ["KERNEL", "AppRequestMixin", "Authorize", "FrameUrl", "Observer", "ProxyConfig",
           "authorized", "clean_query", "same_origin"]
