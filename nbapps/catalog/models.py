"""SQLAlchemy 2 models of the catalog (typed ``Mapped[...]``).

The schema itself is created and changed only by the Alembic migrations in ``migrations/``; these
models must match them (``tests/test_catalog_schema.py`` compares both). Search helpers that exist
only in the database (SQLite ``apps_fts`` FTS5 table and its triggers, PostgreSQL
``apps.search_vector`` generated column + GIN index) are not mapped here.

Times are stored as naive UTC and returned as aware UTC datetimes (:class:`UTCDateTime`).
"""
from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from ..errors import PermissionDenied


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (stored naive UTC on every backend)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use UTC-aware datetimes")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class LoginSession(Base):
    """A browser login: the signed session cookie holds its random id, the catalog only the
    id's SHA-256. Ended (``revoked_at``) by logout, a new password, disabling the user or an
    admin; rows past ``expires_at`` are deleted (:mod:`nbapps.catalog.sessions`)."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime | None]


class App(Base):
    __tablename__ = "apps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    # tags joined by single spaces (tags never contain spaces): shown on cards without a join,
    # and indexed by full-text search; ``app_tags`` has one row per tag for filtering.
    tags_text: Mapped[str] = mapped_column(Text, default="")
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    live_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_apps_live_version"), index=True
    )
    previous_live_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_apps_previous_live_version")
    )
    view_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # curation (migration 0004): front-page position (1 first, None: not featured) and section
    featured: Mapped[int | None] = mapped_column(Integer, index=True)
    category: Mapped[str | None] = mapped_column(String(64), index=True)

    author: Mapped[User] = relationship(lazy="raise")
    tags: Mapped[list[AppTag]] = relationship(
        lazy="raise", cascade="all, delete-orphan", order_by="AppTag.tag"
    )
    live_version: Mapped[Version | None] = relationship(
        foreign_keys=[live_version_id], lazy="raise", post_update=True
    )

    __table_args__ = (
        Index("ix_apps_live_title", "live_version_id", "title"),
        Index("ix_apps_view_count", "view_count"),
    )


class AppTag(Base):
    __tablename__ = "app_tags"

    app_id: Mapped[int] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Version(Base):
    __tablename__ = "versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    tags_text: Mapped[str] = mapped_column(Text, default="")
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    store_key: Mapped[str] = mapped_column(String(500))
    thumbnail: Mapped[str | None] = mapped_column(String(500))
    size: Mapped[int | None] = mapped_column(BigInteger)
    submitter_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    comment: Mapped[str | None] = mapped_column(Text)

    app: Mapped[App] = relationship(foreign_keys=[app_id], lazy="raise")
    submitter: Mapped[User] = relationship(foreign_keys=[submitter_id], lazy="raise")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="raise")

    __table_args__ = (
        UniqueConstraint("app_id", "sha256", name="uq_versions_app_sha256"),
        UniqueConstraint("app_id", "number", name="uq_versions_app_number"),
    )


class Job(Base):
    """Work for the gallery's worker pool, durable across restarts (:mod:`nbapps.catalog.jobs`).

    ``kind`` "check" is the gallery's own validation run of a submitted version; other kinds
    (runs of approved versions) use the same queue. ``claimed_by`` + ``lease_expires_at`` let
    several gallery replicas share the queue: a running job whose lease expires (or whose
    claimer is gone) goes back to the queue; ``attempts`` fences a late finish of an older
    claim. ``artifacts`` maps names to content-addressed blobs of the bundle store.
    """

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("versions.id"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifacts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_jobs_queue", "state", "kind", "priority", "id"),
        Index("ix_jobs_version_kind", "version_id", "kind"),
    )


class Run(Base):
    """A run of an approved version (issue 14): one job of kind ``run`` (same row id) with what
    only runs have (:mod:`nbapps.catalog.runs`). ``origin`` is ``api``, ``schedule`` or
    ``snapshot``; ``batch`` groups the runs of one request."""

    __tablename__ = "runs"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    origin: Mapped[str] = mapped_column(String(16))
    batch: Mapped[str | None] = mapped_column(String(32), index=True)

    __table_args__ = (Index("ix_runs_app_origin", "app_id", "origin", "job_id"),)


class ScheduleRow(Base):
    """A schedule of an app's live version (issue 14, :mod:`nbapps.catalog.schedules`):
    replaced when another version goes live; ``paused`` (by an admin) carries over by name.

    ``next_due_at`` is the next regular firing, ``retry_at`` a retry after a failed run;
    claiming either is a conditional update on its seen value, so one replica fires it.
    ``run_state``: ``claimed`` (a replica is queueing the run), ``queued`` (run
    ``last_run_id`` queued, outcome not read yet), or the outcome read last. ``failures``
    counts consecutive failed runs; with ``broken_since`` set, the app shows *broken* with
    ``findings`` of run ``broken_run_id``."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"))
    name: Mapped[str] = mapped_column(String(64))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_by: Mapped[str | None] = mapped_column(String(64))
    paused_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    retry_at: Mapped[datetime | None] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None]
    last_due_at: Mapped[datetime | None]
    last_run_id: Mapped[int | None] = mapped_column(Integer)
    run_state: Mapped[str | None] = mapped_column(String(16))
    last_passed_run_id: Mapped[int | None] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    broken_since: Mapped[datetime | None]
    broken_run_id: Mapped[int | None] = mapped_column(Integer)
    findings: Mapped[list[Any]] = mapped_column(JSON, default=list)

    __table_args__ = (UniqueConstraint("app_id", "name", name="uq_schedules_app_name"),)


class ReplicaRow(Base):
    """A running gallery process and the address its peers reach it at (replicas forward
    requests for app kernels they do not own to the replica that does: :mod:`nbapps.server.peers`).
    Each replica refreshes ``heartbeat_at`` every few seconds and deletes its row when it stops;
    rows of replicas that died are ignored once stale and deleted after an hour."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    url: Mapped[str] = mapped_column(String(300))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Review(Base):
    """Append-only record of every decision, withdrawal and rollback."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("versions.id"), index=True)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    actor: Mapped[User] = relationship(lazy="raise")


class AuditEventRow(Base):
    """Append-only audit log: never updated or deleted (enforced here and by DB triggers)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(300), default="")
    version_sha256: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_audit_action_target_at", "action", "target", "at"),
        Index("ix_audit_action_ip_at", "action", "ip", "at"),
        Index("ix_audit_actor", "actor"),
    )


class UsageDaily(Base):
    __tablename__ = "usage_daily"

    app_id: Mapped[int] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    views: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    render_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)
    render_count: Mapped[int] = mapped_column(BigInteger, default=0)


APPEND_ONLY = (AuditEventRow, Review)


@event.listens_for(Session, "before_flush")
def _refuse_append_only_changes(session: Session, flush_context: Any, instances: Any) -> None:
    """ORM-level guard: audit events and reviews are only ever inserted."""
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, APPEND_ONLY) and (obj in session.deleted or session.is_modified(obj)):
            raise PermissionDenied(
                f"{obj.__tablename__} is append-only: rows are never changed or deleted",
                code="NBA301",
            )
