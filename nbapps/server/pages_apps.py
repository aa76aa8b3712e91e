"""Gallery, app page, thumbnails, rollback form and the /apps/ runtime placeholder."""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlencode

from markupsafe import Markup
from tornado.web import RequestHandler

from ..accounts import Permission
from ..contract import Parameter
from ..errors import NbappsError, NotFound
from .authz import OPEN_APPS, Requirement
from .base import PageHandler, coded_error
from .views import (
    NOTICES,
    app_visible_to,
    contract_of,
    gallery_page,
    int_arg,
    send_thumbnail,
    tag_list,
    visible_versions,
)

SORT_LABELS = {"updated": "Recently updated", "title": "Title", "views": "Most viewed",
               "relevance": "Best match"}


class GalleryHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    nav = "gallery"

    def get(self) -> None:
        q = self.get_argument("q", "").strip()[:200]
        tag = self.get_argument("tag", "").strip()[:64]
        sort = self.get_argument("sort", "")
        if sort not in SORT_LABELS:
            sort = "relevance" if q else "updated"
        page = int_arg(self, "page", 1)
        content = self.ctx.cache.get(("gallery-html", q, tag, sort, page),
                                     lambda: self._content(q, tag, sort, page))
        self.render_page("gallery.html", content_html=content,
                         **NOTICES.get(self.get_argument("done", ""), {}))

    def _content(self, q: str, tag: str, sort: str, page: int) -> Markup:
        """The listing part of the page (nothing user-specific in it: cached per query)."""
        result = gallery_page(self.ctx, q=q, tag=tag, sort=sort, page=page)

        def url_for_page(n: int) -> str:
            args = {k: v for k, v in (("q", q), ("tag", tag), ("sort", sort)) if v}
            args["page"] = str(n)
            return self.url("/?" + urlencode(args))

        html = self.ctx.templates.get_template("gallery_content.html").render(
            apps=result, q=q, tag=tag, sort=sort, tags=tag_list(self.ctx), sorts=SORT_LABELS,
            url_for_page=url_for_page)
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
        self.render_page(
            "app.html", detail=detail, app=detail.app, live=detail.live,
            contract=contract, form_fields=[form_field(p) for p in contract],
            usage=usage_chart(series),
            versions=visible_versions(self.ctx, user, detail), can_rollback=can_rollback,
            **NOTICES.get(self.get_argument("done", ""), {}),
        )


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
    """Placeholder for ``/apps/<slug>/``: the runner module replaces it (``runtime``)."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}

    def get(self, slug: str, path: str = "") -> None:
        detail = self.ctx.catalog.get_app(slug, live_only=True)
        err: NbappsError = coded_error(
            f"The app runtime is not available yet: “{detail.app.title}” cannot be opened "
            "on this server.", "NBA334", 503)
        raise err


def authorize_app(handler: RequestHandler, slug: str) -> bool:
    """The gallery's decision for the app proxy (``nbapps.server.proxy.proxy_routes``).

    Same identity and permission as every other handler (``open_apps``: any account, or
    anonymous with ``allow_anonymous_apps``), and the app must have a live version. An anonymous
    page request is sent to the login page; otherwise False lets the proxy answer 403.
    """
    ctx = handler.settings["nbapps"]
    token = ctx.identity.bearer_token(handler.request.headers.get("Authorization"))
    user = ctx.identity.user_from_token(token) if token is not None \
        else ctx.identity.user_from_cookie(handler)
    if not ctx.authorizer.is_allowed(user, OPEN_APPS):
        if user is None and handler.request.method == "GET" and \
                handler.request.headers.get("Upgrade", "").lower() != "websocket":
            handler.redirect(ctx.options.login_url(handler.request.uri or ctx.options.base_url))
        return False
    try:
        ctx.cache.get(("live-app", slug),
                      lambda: ctx.catalog.get_app(slug, live_only=True).app.slug)
    except NotFound:
        return False
    return True


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
    """Views per day (last 30 days) as inline SVG bars, plus totals; no JS, no CDN."""

    bars: list[dict[str, Any]]
    width: int
    height: int
    total_views: int
    total_errors: int
    median_render_ms: float | None
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
    # median of the per-day mean render times (the catalog keeps a sum and a count per day)
    daily = [p.render_ms_sum / p.render_count for p in series if p.render_count]
    median = statistics.median(daily) if daily else None
    return UsageChart(bars=bars, width=max(1, len(series) * (bar + gap) - gap), height=height,
                      total_views=sum(p.views for p in series),
                      total_errors=sum(p.errors for p in series),
                      median_render_ms=median, max_views=peak)
