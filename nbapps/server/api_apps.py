"""JSON API of the catalog: apps (listing + full-text search), one app (and its curation),
tags, categories, rollback."""
from __future__ import annotations

import json
from typing import ClassVar

from ..accounts import Permission
from ..errors import NotFound, UsageError
from .authz import Requirement
from .base import APIHandler
from .pages_apps import SORT_LABELS, listing_args
from .routes import Op, Param
from .submissions import clean_comment
from .views import (
    app_visible_to,
    category_list,
    contract_of,
    gallery_page,
    int_arg,
    tag_list,
    visible_versions,
)


class AppsHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Live apps: full-text search, tag and category filters, sort, paging.",
                  query=(
            Param("q", description="words to find in title, description and tags"),
            Param("tag", description="only apps with this tag"),
            Param("category", description="only apps in this gallery section"),
            Param("sort", description="relevance | featured (default) | updated | title | "
                                      "views", enum=tuple(SORT_LABELS)),
            Param("page", "integer"), Param("per_page", "integer", "1-100, default 24"),
        )),
    }

    def get(self) -> None:
        q, tag, category, sort = listing_args(self)
        page = int_arg(self, "page", 1)
        per = int_arg(self, "per_page", self.ctx.options.per_page, hi=100)
        # the answer does not echo q: searches for the same words share one cache entry
        body = self.ctx.cache.get(
            ("api-apps", " ".join(sorted(set(q.lower().split()))), tag, category, sort, page,
             per),
            lambda: json.dumps(gallery_page(self.ctx, q=q, tag=tag, category=category,
                                            sort=sort, page=page, per_page=per).to_dict(),
                               default=str))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


class TagsHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("Tags of live apps with their counts.")}

    def get(self) -> None:
        self.write_json({"items": [{"tag": t, "count": n} for t, n in tag_list(self.ctx)]})


class CategoriesHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("Gallery sections of live apps with counts.")}

    def get(self) -> None:
        self.write_json({"items": [{"category": c, "count": n}
                                   for c, n in category_list(self.ctx)]})


CURATION_SCHEMA = {
    "type": "object",
    "properties": {
        "featured": {"type": ["integer", "null"], "minimum": 1,
                     "description": "front-page position, 1 first; null: not featured"},
        "category": {"type": ["string", "null"], "maxLength": 64,
                     "description": "gallery section; null: none"},
    },
    "additionalProperties": False,
}


class AppHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS,
                                                     "PATCH": Permission.CURATE}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("One app: live version with manifest and parameter contract, history."),
        "PATCH": Op("Curate an app (admins): its front-page position and gallery section; "
                    "fields left out are unchanged.", body="application/json",
                    body_schema=CURATION_SCHEMA),
    }

    async def patch(self, slug: str) -> None:
        user = self.require_user()
        body = self.json_body()
        unknown = sorted(set(body) - set(CURATION_SCHEMA["properties"]))
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}; known: featured, "
                             "category", code="NBA331")
        changes = {k: body[k] for k in ("featured", "category") if k in body}
        detail = await self.ctx.run(self.ctx.catalog.set_curation, slug, user.name,
                                    ip=self.client_ip(), **changes)
        self.ctx.changed()
        self.write_json(detail.to_dict())

    def get(self, slug: str) -> None:
        user = self.require_user()
        detail = self.ctx.catalog.get_app(slug)
        if not app_visible_to(self.ctx, user, detail):
            raise NotFound(f"no app {slug!r}")
        out = detail.to_dict()
        out["versions"] = [v.to_dict() for v in visible_versions(self.ctx, user, detail)]
        out["parameters"] = [p.to_dict() for p in contract_of(detail.live.manifest)] \
            if detail.live else []
        out["open_url"] = self.url(f"/apps/{detail.app.slug}/")
        self.write_json(out)


class RollbackHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.ROLLBACK}
    docs: ClassVar[dict[str, Op]] = {
        "POST": Op("Make the previous live version live again (reviewers, admins).",
                   body="application/json",
                   body_schema={"type": "object", "properties": {"comment": {"type": "string"}}}),
    }

    async def post(self, slug: str) -> None:
        user = self.require_user()
        comment = clean_comment(self.json_body().get("comment"))
        detail = await self.ctx.run(self.ctx.catalog.rollback, slug, user.name, comment,
                                    ip=self.client_ip())
        self.ctx.changed()
        self.ctx.live_changed(slug)
        self.write_json(detail.to_dict())
