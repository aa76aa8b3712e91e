"""Apps: details with history, gallery listing + full-text search, tags, rollback.

Curation: an admin puts apps on the front page in a given order (``featured``: 1 first) and
files them under a ``category`` (:meth:`AppsMixin.set_curation`); the default listing order
("featured") shows featured apps first in that order, then the others newest first.

Search: the query text is split into words (letters and digits only), so quotes, ``*``,
``NEAR``, ``-``, ``:`` and the like are plain text and can never cause a syntax error. Words are
AND-ed with prefix matching: SQLite FTS5 ``"w1"* "w2"*`` over ``apps_fts`` (bm25 ranking, title
weighted above tags above description) and PostgreSQL ``to_tsquery('simple', 'w1:* & w2:*')``
over the generated ``apps.search_vector`` (GIN index, ``ts_rank``).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Float, Integer, func, literal_column, select, text
from sqlalchemy.orm import Session, aliased

from ..accounts import Permission, Role
from ..errors import Conflict, NotFound, PermissionDenied, UsageError
from ..review import State, can_rollback
from .audit import append_event
from .db import CatalogBase, announce_live_change
from .models import App, AppTag, Review, User, Version, utcnow
from .schedules import sync_live_schedules
from .values import AppDetail, AppPage, AppSummary
from .versions import (
    acting_user,
    fold,
    load_version,
    normalize_tags,
    set_app_meta,
    split_tags,
    version_info,
    version_query,
)

SORTS = ("relevance", "featured", "updated", "title", "views")
MAX_CATEGORY_LEN = 64
_CATEGORY_RE = re.compile(r"[^\w-]+")
MAX_PER_PAGE = 100
MAX_QUERY_WORDS = 16
_WORD_RE = re.compile(r"[^\W_]+")

Author = aliased(User, name="author")
Live = aliased(Version, name="live")


def query_words(q: str | None) -> list[str]:
    """The words of a search query (letters/digits runs, lowercased), at most 16 of ≤ 64."""
    if not q:
        return []
    return [w[:64] for w in _WORD_RE.findall(fold(str(q)[:1000]))][:MAX_QUERY_WORDS]


def _summary_columns() -> tuple[Any, ...]:
    return (App.id, App.slug, App.title, App.description, App.tags_text, Author.name,
            App.created_at, App.updated_at, App.view_count, App.live_version_id, Live.sha256,
            Live.number, Live.thumbnail, App.featured, App.category)


def _summary(row: Any) -> AppSummary:
    (app_id, slug, title, description, tags_text, author, created, updated, views, live_id,
     live_sha, live_number, thumb, featured, category) = row
    return AppSummary(id=app_id, slug=slug, title=title, description=description,
                      tags=split_tags(tags_text), author=author, created_at=created,
                      updated_at=updated, views=int(views or 0), live_version_id=live_id,
                      live_sha256=live_sha, live_number=live_number, thumbnail=thumb,
                      featured=featured, category=category)


def normalize_category(value: Any) -> str | None:
    """A category as stored: lowercased, runs of other characters → '-', at most 64
    characters; empty or None → None. UsageError NBA331 for a non-string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError("category must be a string or null", code="NBA331")
    norm = _CATEGORY_RE.sub("-", fold(value).strip()).strip("-_")[:MAX_CATEGORY_LEN]
    return norm or None


def _base_select(*columns: Any) -> Any:
    return (select(*columns).select_from(App)
            .join(Author, App.author_id == Author.id)
            .outerjoin(Live, App.live_version_id == Live.id))


class AppsMixin(CatalogBase):
    def get_app(self, slug: str, *, live_only: bool = False) -> AppDetail:
        """App ``slug`` with live/previous versions and all versions (newest first).
        NotFound NBA302 (also when ``live_only`` and it has no live version)."""
        with self._read() as s:
            return self._app_detail(s, slug, live_only=live_only)

    def _app_detail(self, s: Session, slug: str, *, live_only: bool = False) -> AppDetail:
        row = s.execute(_base_select(*_summary_columns()).where(App.slug == slug)).first()
        if row is None or (live_only and row.live_version_id is None):
            raise NotFound(f"no app named {slug!r}")
        summary = _summary(row)
        versions = tuple(version_info(r) for r in s.execute(
            version_query().where(Version.app_id == summary.id).order_by(Version.id.desc())))
        live = next((v for v in versions if v.is_live), None)
        previous = next((v for v in versions if v.is_previous_live), None)
        return AppDetail(app=summary, live=live, previous=previous, versions=versions)

    def live_versions(self) -> dict[str, tuple[int, str]]:
        """``{slug: (live version id, its sha256)}`` of every app that has a live version:
        the one cheap query gallery replicas poll to follow decisions made on another."""
        with self._read_core() as conn:
            rows = conn.execute(select(App.slug, App.live_version_id, Version.sha256)
                                .join(Version, App.live_version_id == Version.id))
            return {slug: (int(vid), str(sha)) for slug, vid, sha in rows}

    def list_apps(
        self,
        q: str | None = None,
        *,
        tags: Iterable[str] = (),
        sort: str | None = None,
        page: int = 1,
        per_page: int = 24,
        author: str | None = None,
        live_only: bool = True,
        category: str | None = None,
    ) -> AppPage:
        """Gallery listing and search: two indexed queries (page + count), no N+1.

        ``q``: full-text search over title, description, tags (words AND-ed, prefix match;
        any input is safe: quotes and FTS operators are treated as text). ``tags``: apps
        having ALL of them. ``category``: apps filed under it. ``sort``: "relevance" (default
        with ``q``), "featured" (default: featured apps in their order, then newest first),
        "updated" (newest first), "title", "views". ``live_only``: only apps with a live
        version. UsageError NBA100 for an unknown sort.
        """
        words = query_words(q)
        sort = sort or ("relevance" if words else "featured")
        if sort not in SORTS:
            raise UsageError(f"unknown sort {sort!r} (one of: {', '.join(SORTS)})",
                             code="NBA100")
        if sort == "relevance" and not words:
            sort = "featured"
        page = max(1, int(page))
        per_page = max(1, min(int(per_page), MAX_PER_PAGE))

        conditions: list[Any] = []
        if live_only:
            conditions.append(App.live_version_id.is_not(None))
        if author is not None:
            conditions.append(Author.name == author)
        for tag in normalize_tags(tags):
            conditions.append(App.id.in_(select(AppTag.app_id).where(AppTag.tag == tag)))
        if category:
            conditions.append(App.category == normalize_category(category))

        rank: Any = None
        stmt = _base_select(*_summary_columns())
        count_stmt = select(func.count(App.id)).select_from(App)
        if author is not None:
            count_stmt = count_stmt.join(Author, App.author_id == Author.id)
        if words:
            if self.dialect == "sqlite":
                fts_query = " ".join('"' + w + '"*' for w in words)
                fts = (text("SELECT rowid AS app_id, bm25(apps_fts, 10.0, 1.0, 5.0) AS rank "
                            "FROM apps_fts WHERE apps_fts MATCH :fts_q")
                       .bindparams(fts_q=fts_query)
                       .columns(app_id=Integer, rank=Float).subquery("fts"))
                stmt = stmt.join(fts, fts.c.app_id == App.id)
                count_stmt = count_stmt.join(fts, fts.c.app_id == App.id)
                rank = fts.c.rank.asc()
            else:
                tsq = func.to_tsquery("simple", " & ".join(w + ":*" for w in words))
                vector = literal_column("apps.search_vector")
                conditions.append(vector.op("@@")(tsq))
                rank = func.ts_rank(vector, tsq).desc()
        stmt = stmt.where(*conditions)
        count_stmt = count_stmt.where(*conditions)

        order: list[Any]
        if sort == "relevance":
            order = [rank, App.updated_at.desc()]
        elif sort == "title":
            order = [func.lower(App.title), App.title]
        elif sort == "views":
            order = [App.view_count.desc(), App.updated_at.desc()]
        elif sort == "featured":  # featured first, in their order (NULLs last on both DBs)
            order = [App.featured.is_(None), App.featured, App.updated_at.desc()]
        else:
            order = [App.updated_at.desc()]
        stmt = stmt.order_by(*order, App.id.desc()).limit(per_page).offset(
            (page - 1) * per_page)
        with self._read_core() as conn:  # Core connection: no ORM overhead on the hot path
            items = tuple(_summary(r) for r in conn.execute(stmt))
            if page == 1 and len(items) < per_page:
                total = len(items)  # the whole result fits on the first page: no count query
            else:
                total = int(conn.execute(count_stmt).scalar() or 0)
        return AppPage(items=items, total=total, page=page, per_page=per_page)

    def list_tags(self, *, live_only: bool = True, limit: int = 200) -> list[tuple[str, int]]:
        """(tag, number of apps) pairs, most used first."""
        n = func.count(AppTag.app_id)
        stmt = select(AppTag.tag, n).join(App, AppTag.app_id == App.id)
        if live_only:
            stmt = stmt.where(App.live_version_id.is_not(None))
        stmt = stmt.group_by(AppTag.tag).order_by(n.desc(), AppTag.tag).limit(
            max(1, min(int(limit), 10_000)))
        with self._read() as s:
            return [(tag, int(count)) for tag, count in s.execute(stmt)]

    def list_categories(self, *, live_only: bool = True) -> list[tuple[str, int]]:
        """(category, number of apps) pairs, by name."""
        n = func.count(App.id)
        stmt = select(App.category, n).where(App.category.is_not(None))
        if live_only:
            stmt = stmt.where(App.live_version_id.is_not(None))
        stmt = stmt.group_by(App.category).order_by(App.category)
        with self._read() as s:
            return [(cat, int(count)) for cat, count in s.execute(stmt)]

    def set_curation(self, slug: str, actor: str, *, featured: Any = ...,
                     category: Any = ..., ip: str | None = None) -> AppDetail:
        """Set an app's front-page position (``featured``: an integer ≥ 1, or None to take it
        off) and/or ``category`` (None to clear); arguments left out are unchanged. Admins
        only (NBA301); NBA331 for bad values. Audited as ``app.curate``."""
        changes: dict[str, Any] = {}
        if featured is not ...:
            if featured is not None and (isinstance(featured, bool)
                                         or not isinstance(featured, int)
                                         or not 1 <= featured <= 1_000_000):
                raise UsageError("featured must be a whole number from 1 (first) or null",
                                 code="NBA331")
            changes["featured"] = featured
        if category is not ...:
            changes["category"] = normalize_category(category)
        with self._write() as s:
            user = acting_user(s, actor)
            if not Role.parse(user.role).can(Permission.CURATE):
                raise PermissionDenied("only admins curate the gallery", code="NBA301")
            app = s.scalars(select(App).where(App.slug == slug).with_for_update()).first()
            if app is None:
                raise NotFound(f"no app named {slug!r}")
            for key, value in changes.items():
                setattr(app, key, value)
            if changes:
                append_event(s, "app.curate", actor=user.name, target=slug, ip=ip,
                             details=dict(changes))
            s.flush()
            return self._app_detail(s, slug)

    def rollback(self, slug: str, actor: str, comment: str = "",
                 *, ip: str | None = None) -> AppDetail:
        """Make the previous live version live again (reviewer/admin, NBA301). The new
        previous is the latest approved version older than it. Conflict NBA303 if there is
        none. Audited as ``app.rollback``."""
        comment = str(comment or "")[:10_000]
        with self._write() as s:
            user = acting_user(s, actor)
            if not can_rollback(user.role):
                raise PermissionDenied(f"role {user.role!r} cannot roll back apps",
                                       code="NBA301")
            app = s.scalars(select(App).where(App.slug == slug).with_for_update()).first()
            if app is None:
                raise NotFound(f"no app named {slug!r}")
            if app.previous_live_version_id is None or app.live_version_id is None:
                raise Conflict(f"app {slug!r} has no previous live version to roll back to",
                               code="NBA303")
            old_live = load_version(s, app.live_version_id)
            target = load_version(s, app.previous_live_version_id)
            new_previous = s.scalar(
                select(Version.id).where(
                    Version.app_id == app.id, Version.state == State.APPROVED.value,
                    Version.id < target.id, Version.id != old_live.id,
                ).order_by(Version.id.desc()).limit(1))
            now = utcnow()
            app.live_version_id = target.id
            app.previous_live_version_id = new_previous
            app.updated_at = now
            set_app_meta(s, app, target.title, target.description, target.tags)
            sync_live_schedules(s, app, target.id, target.manifest, now)
            announce_live_change(s, slug)
            s.add(Review(version_id=target.id, actor_id=user.id, action="rollback",
                         from_state=None, to_state=None, comment=comment or None, at=now))
            append_event(s, "app.rollback", actor=user.name, target=slug,
                         version_sha256=target.sha256, ip=ip,
                         details={"from_version_id": old_live.id, "from_sha256": old_live.sha256,
                                  "to_version_id": target.id, "comment": comment})
            s.flush()
            s.expire_all()
            detail = self._app_detail(s, slug)
        from ..variants import queue_snapshot_runs  # live again: its snapshots, if opted in

        queue_snapshot_runs(self, slug, target.id, target.manifest)
        return detail
