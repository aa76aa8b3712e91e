"""JSON API of the catalog: apps (listing + full-text search), one app, tags, rollback."""
from __future__ import annotations

import json
from typing import ClassVar

from ..accounts import Permission
from ..errors import NotFound
from .authz import Requirement
from .base import APIHandler
from .pages_apps import SORT_LABELS
from .routes import Op, Param
from .submissions import clean_comment
from .views import app_visible_to, contract_of, gallery_page, int_arg, tag_list, visible_versions


class AppsHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Live apps: full-text search, tag filter, sort, paging.", query=(
            Param("q", description="words to find in title, description and tags"),
            Param("tag", description="only apps with this tag"),
            Param("sort", description="relevance | updated | title | views"),
            Param("page", "integer"), Param("per_page", "integer", "1-100, default 24"),
        )),
    }

    def get(self) -> None:
        q = self.get_argument("q", "").strip()[:200]
        tag = self.get_argument("tag", "").strip()[:64]
        sort = self.get_argument("sort", "")
        if sort not in SORT_LABELS:
            sort = "relevance" if q else "updated"
        page = int_arg(self, "page", 1)
        per = int_arg(self, "per_page", self.ctx.options.per_page, hi=100)
        # the answer does not echo q: searches for the same words share one cache entry
        body = self.ctx.cache.get(
            ("api-apps", " ".join(sorted(set(q.lower().split()))), tag, sort, page, per),
            lambda: json.dumps(gallery_page(self.ctx, q=q, tag=tag, sort=sort, page=page,
                                            per_page=per).to_dict(), default=str))
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(body)


class TagsHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("Tags of live apps with their counts.")}

    def get(self) -> None:
        self.write_json({"items": [{"tag": t, "count": n} for t, n in tag_list(self.ctx)]})


class AppHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("One app: live version with manifest and parameter contract, history."),
    }

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
