"""The app frame: a running app inside a slim gallery page, and the app's start-up status.

``GET <base>app/<slug>/open?<params>`` is a gallery page (the gallery's origin, its layout and
CSP): the app's title as heading and tab title, a way back, a copy-link button, the parameter
form (labels from the parameters' help comments), a download button, and below them the app
itself in an iframe: ``<base>apps/<slug>/~t/<ticket>/?<params>``, served sandboxed by the proxy
(:mod:`nbapps.server.app_isolation`). Rendering it needs no kernel and no runner: the catalog
entry (cached) and a ticket signature. A browser opening ``<base>apps/<slug>/?<params>`` is
redirected here, so old links and the app page's form keep working.

While a runner starts, the frame's script (``static/app_frame.js``) polls
``GET <base>api/apps/<slug>/status`` and shows the steps over the iframe; the iframe's own
request waits in the proxy for the runner and turns into the app by itself. Without script the
iframe still shows the proxy's waiting page, which reloads itself.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import urlencode

from ..contract import ParameterContract, query_texts
from ..errors import NotFound, ParameterError
from .app_isolation import IFRAME_SANDBOX
from .app_origins import AppOrigins
from .app_status import STEPS, app_status
from .app_tickets import SEGMENT, STATUS_PATH, AppTickets
from .authz import OPEN_APPS, Requirement
from .base import PAGE_CSP, APIHandler, PageHandler
from .context import ServerOptions
from .pages_apps import form_field, ticket_session
from .routes import Op
from .views import contract_of


def frame_path(slug: str) -> str:
    return f"/app/{slug}/open"


def live_path(slug: str) -> str:
    """The frame that always runs the app live (a snapshot's *Run live*), where
    :func:`frame_path` first shows an opted-in app's snapshot when no values are asked for."""
    return f"/app/{slug}/live"


def frame_url_of(options: ServerOptions) -> Callable[[str, str], str]:
    """``frame_url(slug, query)`` for the proxy: where a browser opening an app is sent."""
    def frame_url(slug: str, query: str) -> str:
        return options.url(frame_path(slug)) + (f"?{query}" if query else "")
    return frame_url


def _live(ctx: Any, slug: str) -> Any:
    """The app's catalog entry with its live version (cached like the gallery's listings)."""
    detail = ctx.cache.get(("app-frame", slug), lambda: ctx.catalog.get_app(slug, live_only=True))
    if detail.live is None:
        raise NotFound(f"no app {slug!r}")
    return detail


@dataclasses.dataclass(frozen=True)
class AskedValues:
    """The parameter values a frame's URL asks for, checked against the contract."""

    fields: list[Any]  # form fields showing the asked values (or the defaults)
    problems: list[str]  # why the values cannot be used; empty when they can
    suffix: str  # the query to pass on to the app ("?a=1&b=2" or "")


def asked_values(handler: Any, contract: list[Any]) -> AskedValues:
    raw = query_texts(handler.request.query_arguments)
    values: dict[str, Any] = {}
    problems: list[str] = []
    if raw:
        try:
            values = ParameterContract(tuple(contract)).coerce(raw)
        except ParameterError as err:
            problems = err.messages
    shown = [dataclasses.replace(p, default=values[p.name]) if p.name in values else p
             for p in contract]
    query = urlencode([(k, v) for k, vs in raw.items()
                       for v in (vs if isinstance(vs, list) else [vs])])
    return AskedValues([form_field(p) for p in shown], problems, f"?{query}" if query else "")


class AppFrameHandler(PageHandler):
    """``<base>app/<slug>/open``: the frame around a running app (see the module docstring)."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    nav = "gallery"
    #: an app opted in to snapshots opens as its latest default report when no values are
    #: asked for (the crowd that only looks costs no kernel); False for ``/live``
    snapshot_first = True

    def get(self, slug: str) -> None:
        user = self.current_user
        detail = _live(self.ctx, slug)
        app = detail.app
        if self.snapshot_first and not self.request.query:
            from .snapshots import find_snapshot, snapshot_path  # snapshots imports pages_apps

            if find_snapshot(self.ctx, slug, detail.live, None) is not None:
                self.redirect(self.url(snapshot_path(slug)))
                return
        asked = asked_values(self, contract_of(detail.live.manifest))
        problems, suffix = asked.problems, asked.suffix
        tickets: AppTickets = self.settings["nbapps_tickets"]
        # bound to this login session: it stops working when the session ends (logout)
        ticket = tickets.issue(slug, user.name if user else "", user.id if user else 0,
                               session_hash=ticket_session(self, user))
        runtime = self.ctx.runtime
        ready = bool(runtime is not None and hasattr(runtime, "runner_for")
                     and runtime.runner_for(slug) is not None)
        if problems:
            self.set_status(400)
        origins: AppOrigins | None = self.settings.get("nbapps_app_origins")
        origin = origins.origin(self.request, slug) if origins is not None else None
        sandbox = IFRAME_SANDBOX
        if origin:  # the app's own origin (see .app_origins): the frame may show it
            sandbox += " allow-same-origin"
            self.set_header("Content-Security-Policy",
                            PAGE_CSP.replace("frame-src 'self'", f"frame-src 'self' {origin}"))
        self.render_page(
            "app_frame.html", app=app, live=detail.live, fields=asked.fields,
            problems=problems,
            app_src=None if problems else
            (origin or "") + self.url(f"/apps/{slug}/{SEGMENT}/{ticket}/") + suffix,
            share_url=self.gallery_url() + frame_path(slug) + suffix,
            form_action=self.url(frame_path(slug)),
            # on the ticket path: behind a load balancer hashing on tickets, the poll reaches
            # the replica that starts this page's runner
            status_url=self.url(f"/api/apps/{slug}/status") if problems else
            self.url(f"/apps/{slug}/{SEGMENT}/{ticket}/{STATUS_PATH}"),
            ready=ready, steps=STEPS,
            sandbox=sandbox,
            # "Report (PDF)" (static/app_runs.js): a signed-in viewer runs the app on the server
            can_run=user is not None, runs_url=self.url(f"/api/apps/{slug}/runs"),
        )


class AppLiveFrameHandler(AppFrameHandler):
    """``<base>app/<slug>/live``: the app frame, never a snapshot."""

    snapshot_first = False


class AppStatusHandler(APIHandler):
    """``GET <base>api/apps/<slug>/status``: ready, or which step of its start (never starts
    anything: opening the app does)."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Where a live app is on its way to the viewer: ready, starting (step k of "
                  "n), busy (queue) or unavailable (with a reference number)."),
    }

    async def get(self, slug: str) -> None:
        detail = _live(self.ctx, slug)
        status = await app_status(self.ctx.runtime, slug, detail.app.title)
        self.write_json(status.to_dict())
