"""Plain values the catalog returns: frozen dataclasses, detached from any database session.

The server can hand them to templates or serialise them (``to_dict()``) from any thread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..accounts import Role
from ..review import State


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool = False
    #: changes whenever the password does (a digest of its hash): login sessions carry it, so a
    #: new password ends the sessions opened with the old one. Never shown or serialized.
    session_stamp: str = field(default="", repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role.value, "disabled": self.disabled,
                "created_at": _iso(self.created_at)}


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user: str
    prefix: str                       # first characters of the token, e.g. "nba_Ab3dE9xQ"
    label: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "prefix": self.prefix, "label": self.label,
                "created_at": _iso(self.created_at), "last_used_at": _iso(self.last_used_at),
                "revoked_at": _iso(self.revoked_at), "active": self.active}


@dataclass(frozen=True)
class VersionInfo:
    """One submitted bundle of an app (a "submission"); ``id`` is the submission id."""

    id: int
    app_slug: str
    number: int                       # 1, 2, 3 ... within the app
    sha256: str
    state: State
    submitter: str
    created_at: datetime
    title: str
    description: str
    tags: tuple[str, ...]
    store_key: str
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)
    thumbnail: str | None = None      # path inside the bundle, if any
    size: int | None = None           # archive size in bytes
    decided_by: str | None = None
    decided_at: datetime | None = None
    comment: str | None = None        # the latest decision's comment
    is_live: bool = False
    is_previous_live: bool = False

    def to_dict(self, *, with_manifest: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "app": self.app_slug, "number": self.number, "sha256": self.sha256,
            "state": self.state.value, "submitter": self.submitter,
            "created_at": _iso(self.created_at), "title": self.title,
            "description": self.description, "tags": list(self.tags),
            "thumbnail": self.thumbnail, "size": self.size, "decided_by": self.decided_by,
            "decided_at": _iso(self.decided_at), "comment": self.comment,
            "live": self.is_live, "previous_live": self.is_previous_live,
        }
        if with_manifest:
            out["manifest"] = self.manifest
        return out


@dataclass(frozen=True)
class Submission:
    """Result of :meth:`Catalog.submit`: ``created`` is False when identical content existed."""

    version: VersionInfo
    created: bool


@dataclass(frozen=True)
class ReviewInfo:
    """One append-only review record (decision, withdrawal or rollback)."""

    id: int
    version_id: int
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    comment: str | None
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "version_id": self.version_id, "actor": self.actor,
                "action": self.action, "from_state": self.from_state,
                "to_state": self.to_state, "comment": self.comment, "at": _iso(self.at)}


@dataclass(frozen=True)
class AppSummary:
    """What a gallery card shows. ``live_*`` are None for an app with no approved version."""

    id: int
    slug: str
    title: str
    description: str
    tags: tuple[str, ...]
    author: str
    created_at: datetime
    updated_at: datetime
    views: int = 0
    live_version_id: int | None = None
    live_sha256: str | None = None
    live_number: int | None = None
    thumbnail: str | None = None      # path inside the live bundle
    featured: int | None = None       # front-page position (1 first); None: not featured
    category: str | None = None       # gallery section

    @property
    def is_live(self) -> bool:
        return self.live_version_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {"slug": self.slug, "title": self.title, "description": self.description,
                "tags": list(self.tags), "author": self.author,
                "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
                "views": self.views, "live_version_id": self.live_version_id,
                "live_sha256": self.live_sha256, "live_number": self.live_number,
                "thumbnail": self.thumbnail, "featured": self.featured,
                "category": self.category}


@dataclass(frozen=True)
class AppDetail:
    """An app with its live and previous live versions and its whole history (newest first)."""

    app: AppSummary
    live: VersionInfo | None
    previous: VersionInfo | None
    versions: tuple[VersionInfo, ...]

    def to_dict(self) -> dict[str, Any]:
        out = self.app.to_dict()
        out["live"] = self.live.to_dict(with_manifest=True) if self.live else None
        out["previous_live"] = self.previous.to_dict() if self.previous else None
        out["versions"] = [v.to_dict() for v in self.versions]
        return out


@dataclass(frozen=True)
class AppPage:
    """One page of a gallery listing or search."""

    items: tuple[AppSummary, ...]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    def to_dict(self) -> dict[str, Any]:
        return {"items": [a.to_dict() for a in self.items], "total": self.total,
                "page": self.page, "per_page": self.per_page, "pages": self.pages}


@dataclass(frozen=True)
class AuditEvent:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    version_sha256: str | None = None
    ip: str | None = None
    details: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": _iso(self.at), "actor": self.actor, "action": self.action,
                "target": self.target, "version_sha256": self.version_sha256, "ip": self.ip,
                "details": self.details}


@dataclass(frozen=True)
class UsagePoint:
    day: date
    views: int = 0
    errors: int = 0
    render_ms_sum: float = 0.0
    render_count: int = 0

    @property
    def avg_render_ms(self) -> float | None:
        return self.render_ms_sum / self.render_count if self.render_count else None

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "views": self.views, "errors": self.errors,
                "render_ms_sum": self.render_ms_sum, "render_count": self.render_count,
                "avg_render_ms": self.avg_render_ms}
