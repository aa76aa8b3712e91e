"""Gallery, app page, thumbnails, rollback form and the /apps/ runtime placeholder."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from markupsafe import Markup
from tornado.web import RequestHandler

from ..accounts import Permission
from ..contract import Parameter
from ..errors import NbappsError, NotFound
from .app_isolation import from_untrusted_context
from .app_tickets import AppTickets, Ticket
from .authz import OPEN_APPS, Requirement
from .base import PAGE_CSP, PageHandler, coded_error
from .run_views import app_runs_context
from .schedule_views import app_schedule_context, broken_slugs
from .views import (
    NOTICES,
    app_visible_to,
    category_list,
    contract_of,
    gallery_page,
    int_arg,
    send_thumbnail,
    tag_list,
    visible_versions,
)

SORT_LABELS = {"featured": "Featured first", "updated": "Recently updated", "title": "Title",
               "views": "Most viewed", "relevance": "Best match"}


def listing_args(handler: RequestHandler) -> tuple[str, str, str, str]:
    """The gallery query of a request, as the page and the API read it: (q, tag, category,
    sort); the sort defaults to "relevance" for a search, else "featured"."""
    q = handler.get_argument("q", "").strip()[:200]
    tag = handler.get_argument("tag", "").strip()[:64]
    category = handler.get_argument("category", "").strip()[:64]
    sort = handler.get_argument("sort", "")
    if sort not in SORT_LABELS:
        sort = "relevance" if q else "featured"
    return q, tag, category, sort


class GalleryHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    nav = "gallery"

    def get(self) -> None:
        q, tag, category, sort = listing_args(self)
        page = int_arg(self, "page", 1)
        content = self.ctx.cache.get(("gallery-html", q, tag, category, sort, page),
                                     lambda: self._content(q, tag, category, sort, page))
        self.render_page("gallery.html", content_html=content,
                         **NOTICES.get(self.get_argument("done", ""), {}))

    def _content(self, q: str, tag: str, category: str, sort: str, page: int) -> Markup:
        """The listing part of the page (nothing user-specific in it: cached per query)."""
        result = gallery_page(self.ctx, q=q, tag=tag, category=category, sort=sort, page=page)

        def url_for(n: int = 1, **change: str) -> str:
            args = {"q": q, "tag": tag, "category": category,
                    "sort": sort if sort not in ("featured", "relevance") else ""}
            args.update(change)
            query = {k: v for k, v in args.items() if v}
            if n > 1:
                query["page"] = str(n)
            return self.url("/" + ("?" + urlencode(query) if query else ""))

        html = self.ctx.templates.get_template("gallery_content.html").render(
            apps=result, q=q, tag=tag, category=category, sort=sort, tags=tag_list(self.ctx),
            categories=category_list(self.ctx), sorts=SORT_LABELS, url_for_page=url_for,
            url_for=url_for, broken=broken_slugs(self.ctx, [a.slug for a in result.items]))
        return Markup(html)


class AppPageHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    nav = "gallery"

    def get(self, slug: str) -> None:
        user = self.require_user()
        detail = self.ctx.catalog.get_app(slug)
        if not app_visible_to(self.ctx, user, detail):
            raise NotFound(f"no app {slug!r}")
        can_rollback = (self.ctx.authorizer.has_permission(user, Permission.ROLLBACK)
                        and detail.previous is not None)
        contract = contract_of(detail.live.manifest) if detail.live else []
        try:
            series = self.ctx.catalog.usage_series(slug, days=30)
        except NbappsError:
            series = []
        open_url = self.url(app_open_path(detail.app.slug))
        from .snapshots import snapshot_link, variant_links  # snapshots imports this module

        self.render_page(
            "app.html", detail=detail, app=detail.app, live=detail.live,
            contract=contract, form_fields=[form_field(p) for p in contract],
            usage=usage_chart(series), open_url=open_url,
            share_url=self.gallery_url() + app_open_path(detail.app.slug),
            variants=variant_links(self, detail.app.slug, detail.live, open_url),
            snapshot=snapshot_link(self, detail.app.slug, detail.live),
            versions=visible_versions(self.ctx, user, detail), can_rollback=can_rollback,
            **app_schedule_context(self.ctx, user, detail),
            **app_runs_context(self.ctx, user, detail),
            **NOTICES.get(self.get_argument("done", ""), {}),
        )


def app_open_path(slug: str) -> str:
    """Where "Open app" goes (parameters are added as a query string): the app's frame
    (:mod:`nbapps.server.app_frame`), the running app in a slim gallery page."""
    from .app_frame import frame_path  # app_frame imports this module

    return frame_path(slug)


class AppThumbnailHandler(PageHandler):
    """The live version's thumbnail (only live versions: nothing unapproved is served here)."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}

    async def get(self, slug: str) -> None:
        detail = self.ctx.catalog.get_app(slug, live_only=True)
        live = detail.live
        if live is None or not live.thumbnail:
            raise NotFound("this app has no thumbnail")
        await send_thumbnail(self, live.sha256, live.thumbnail)


class RollbackFormHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.ROLLBACK}

    async def post(self, slug: str) -> None:
        user = self.require_user()
        comment = self.get_body_argument("comment", "")[:5000]
        await self.ctx.run(self.ctx.catalog.rollback, slug, user.name, comment,
                           ip=self.client_ip())
        self.ctx.changed()
        self.ctx.live_changed(slug)
        self.redirect(self.url(f"/app/{slug}?done=rollback"))


class AppRuntimeHandler(PageHandler):
    """Placeholder for ``/apps/<slug>/``: the runner module replaces it (``runtime``).

    Its answer shows inside the app frame's iframe, so the gallery's own pages may frame it."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    frame_options = "SAMEORIGIN"
    csp = PAGE_CSP.replace("frame-ancestors 'none'", "frame-ancestors 'self'")

    def get(self, slug: str, path: str = "") -> None:
        detail = self.ctx.catalog.get_app(slug, live_only=True)
        err: NbappsError = coded_error(
            f"The app runtime is not available yet: “{detail.app.title}” cannot be opened "
            "on this server.", "NBA334", 503)
        raise err


def authorize_app(handler: RequestHandler, slug: str) -> bool:
    """The gallery's decision for the app proxy (``nbapps.server.proxy.proxy_routes``).

    Same permission as every other handler (``open_apps``: any account, or anonymous with
    ``allow_anonymous_apps``), and the app must have a live version: a missing app is a 404 for
    everyone (``NotFound``), once the request may ask. Who is asking:

    - a request with an app ticket (the proxy checked it: ``handler.app_ticket``) is the viewer
      it names, if that account still exists and may open apps, and, for a ticket bound to a
      login session, if that session is still live (else NBA340, the proxy's expired page);
      nothing else counts;
    - otherwise an API token, or the session cookie unless the request comes from an app page
      or another site (:func:`~.app_isolation.from_untrusted_context`).

    An anonymous page request is sent to the login page; otherwise False lets the proxy answer
    403. The viewer is left on ``handler.app_viewer`` and their session on
    ``handler.app_session`` (for the tickets the proxy issues, see :func:`proxy_viewer`).
    """
    ctx = handler.settings["nbapps"]
    ticket = getattr(handler, "app_ticket", None)
    user = proxy_viewer(handler)
    if ticket is not None and ticket.user and user is None:
        return False
    if not ctx.authorizer.is_allowed(user, OPEN_APPS):
        if user is None:
            send_page_to_login(handler)
        return False
    try:
        ctx.cache.get(("live-app", slug),
                      lambda: ctx.catalog.get_app(slug, live_only=True).app.slug)
    except NotFound:
        raise NotFound(f"no app {slug!r}") from None
    handler.app_viewer = user  # type: ignore[attr-defined]
    return True


def proxy_viewer(handler: RequestHandler) -> Any:
    """Who asks the app proxy: the viewer an app ticket names (``handler.app_ticket``, checked
    by the proxy; nothing else counts), else an API token's user, else the session cookie's
    unless the request comes from an app page or another site.

    A cookie's viewer leaves the catalog hash of that session on ``handler.app_session`` (""
    otherwise): a ticket the proxy issues to them is bound to it. A ticket bound to a session
    that has ended raises NBA340 (403)."""
    ctx = handler.settings["nbapps"]
    handler.app_session = ""  # type: ignore[attr-defined]
    ticket = getattr(handler, "app_ticket", None)
    if ticket is not None:
        return _ticket_viewer(handler, ticket)
    token = ctx.identity.bearer_token(handler.request.headers.get("Authorization"))
    if token is not None:
        return ctx.identity.user_from_token(token)
    if from_untrusted_context(handler.request):
        return None
    user = ctx.identity.user_from_cookie(handler)
    if user is not None:
        handler.app_session = ticket_session(handler, user)  # type: ignore[attr-defined]
    return user


def ticket_session(handler: RequestHandler, user: Any) -> str:
    """The catalog hash of the login session ``user`` came with on this request, what the app
    tickets issued to them are bound to; "" for anonymous viewers and API tokens (unbound)."""
    if user is None or getattr(user, "via", "") != "cookie":
        return ""
    identity = handler.settings["nbapps"].identity
    session = identity.session(handler)
    return identity.session_hash(session) if session is not None else ""


def send_page_to_login(handler: RequestHandler) -> None:
    """Redirect an anonymous page request (no ticket, GET, not a WebSocket) to the login page;
    anything else is left to the caller's refusal."""
    ctx = handler.settings["nbapps"]
    if (getattr(handler, "app_ticket", None) is None and handler.request.method == "GET"
            and handler.request.headers.get("Upgrade", "").lower() != "websocket"):
        handler.redirect(ctx.options.login_url(handler.request.uri or ctx.options.base_url))


def _ticket_viewer(handler: RequestHandler, ticket: Ticket) -> Any:
    """The enabled account a ticket names (None for anonymous or a gone/disabled account);
    NBA340 (403) when the ticket is bound to a login session that is no longer live."""
    if not ticket.user:
        return None
    ctx = handler.settings["nbapps"]
    user = ctx.cache.get(("app-viewer", ticket.user),
                         lambda: ctx.identity.users.user_by_name(ticket.user))
    if user is None or user.id != ticket.uid:
        return None
    if ticket.session:
        # cached per user like the sessions themselves: no database read per request
        tickets: AppTickets = handler.settings["nbapps_tickets"]
        identity = ctx.identity
        if (not tickets.is_bound_to(ticket, identity.live_sessions(ticket.uid))
                and not tickets.is_bound_to(
                    ticket, identity.live_sessions(ticket.uid, missing=ticket.session))):
            raise coded_error("This app page was opened in a login session that has ended "
                              "(logged out). Sign in again to open the app.", "NBA340", 403)
    return user


# -- parameter form --------------------------------------------------------------------------------

@dataclass
class FormField:
    """One input of the app page's parameter form (rendered by ``app_form.html``).

    ``widget`` is "number", "select" or "text". Booleans are a true/false select rather than a
    checkbox: an unchecked checkbox sends nothing and a hidden+checkbox pair sends two values
    (a list, which the contract refuses for a bool), while a select always sends exactly one
    value that :meth:`nbapps.contract.ParameterContract.coerce` reads back.
    """

    name: str
    type: str
    widget: str
    value: str
    help: str = ""
    min: str | None = None
    max: str | None = None
    step: str | None = None
    #: (value, label, selected) for selects
    options: list[tuple[str, str, bool]] = field(default_factory=list)
    #: what a person reads: the help comment (or the name in words) ...
    label: str = ""
    #: ... and, under it, what the label does not say (a long help text, the allowed range)
    hint: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            self.label, self.hint = field_label(self.name, self.help, self.min, self.max)


#: a help comment longer than this is shown under the input, the name in words is the label
MAX_LABEL_CHARS = 60


def words_of(name: str) -> str:
    """``annual_rate_pct`` → ``Annual rate pct``."""
    text = " ".join(part for part in name.replace("-", "_").split("_") if part)
    return text[:1].upper() + text[1:] if text else name


def field_label(name: str, help_text: str, lo: str | None = None,
                hi: str | None = None) -> tuple[str, str]:
    """(label, hint) of a parameter: the help comment is the label ("Loan amount"), else the
    name in words; the hint holds a long help text and the allowed range."""
    help_text = " ".join((help_text or "").split())
    if help_text and len(help_text) <= MAX_LABEL_CHARS:
        label, hint = help_text[:1].upper() + help_text[1:], ""
    else:
        label, hint = words_of(name), help_text
    if lo is not None or hi is not None:
        span = (f"{_plain(lo)} to {_plain(hi)}" if lo is not None and hi is not None
                else f"at least {_plain(lo)}" if lo is not None else f"at most {_plain(hi)}")
        hint = f"{hint} ({span})" if hint else span
    return label, hint


def _plain(number: str | None) -> str:
    """``10.0`` → ``10`` for a range shown to people."""
    text = str(number)
    return text[:-2] if text.endswith(".0") else text


def _text_of(value: Any, kind: str) -> str:
    """A value as the text the contract's ``parse_text`` reads back to the same value."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def _number(value: float | None) -> str | None:
    return None if value is None else repr(value)


def form_field(p: Parameter) -> FormField:
    value = _text_of(p.default, p.type)
    if p.choices is not None:
        options = [(_text_of(c, p.type), _text_of(c, p.type), _text_of(c, p.type) == value)
                   for c in p.choices]
        if not any(sel for _, _, sel in options):
            options.insert(0, (value, value, True))
        return FormField(p.name, p.type, "select", value, p.help, options=options)
    if p.type == "bool":
        return FormField(p.name, p.type, "select", value, p.help, options=[
            ("true", "yes", p.default is True), ("false", "no", p.default is not True)])
    if p.type in ("int", "float") and p.default is not None:
        return FormField(p.name, p.type, "number", value, p.help, min=_number(p.min),
                         max=_number(p.max), step="1" if p.type == "int" else "any")
    return FormField(p.name, p.type, "text", value, p.help)


# -- usage chart -----------------------------------------------------------------------------------

@dataclass
class UsageChart:
    """Views per day (last 30 days) as inline SVG bars, plus totals; no JS, no CDN.

    No render time is shown: the proxy's time for a warm page (milliseconds) says nothing
    about what a person waits for a cold app (seconds), so a figure would mislead."""

    bars: list[dict[str, Any]]
    width: int
    height: int
    total_views: int
    total_errors: int
    max_views: int


def usage_chart(series: list[Any], *, height: int = 48, bar: int = 8, gap: int = 2
                ) -> UsageChart:
    peak = max((p.views for p in series), default=0)
    bars = []
    for i, p in enumerate(series):
        h = round(p.views / peak * (height - 2)) if peak else 0
        if p.views and h < 1:
            h = 1
        bars.append({"x": i * (bar + gap), "y": height - h, "w": bar, "h": h,
                     "day": p.day.isoformat(), "views": p.views, "errors": p.errors})
    return UsageChart(bars=bars, width=max(1, len(series) * (bar + gap) - gap), height=height,
                      total_views=sum(p.views for p in series),
                      total_errors=sum(p.errors for p in series), max_views=peak)
