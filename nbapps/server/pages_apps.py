"""Gallery, app page, thumbnails, rollback form and the /apps/ runtime placeholder."""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import quote, urlencode

from markupsafe import Markup
from tornado.web import RequestHandler

from ..accounts import Permission
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
            return "/?" + urlencode(args)

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
        self.render_page(
            "app.html", detail=detail, app=detail.app, live=detail.live,
            contract=contract_of(detail.live.manifest) if detail.live else [],
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
        self.redirect(f"/app/{slug}?done=rollback")


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
            handler.redirect("/login?next=" + quote(handler.request.uri or "/", safe="/"))
        return False
    try:
        ctx.cache.get(("live-app", slug),
                      lambda: ctx.catalog.get_app(slug, live_only=True).app.slug)
    except NotFound:
        return False
    return True
