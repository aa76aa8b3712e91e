"""The catalog: users, API tokens, apps, versions (submissions), reviews, audit log, usage.

Open it with :func:`open_catalog` (applies the Alembic migrations shipped in
``nbapps/catalog/migrations``; refuses a database migrated by a newer nbapps, NBA306). Every
:class:`Catalog` method is synchronous, runs in its own short transaction and returns plain frozen
dataclasses (:mod:`nbapps.catalog.values`), so the tornado server can call it directly or from a
thread pool. Errors are :class:`~nbapps.errors.NbappsError` subclasses with NBA3xx codes.

SQLite (default, ``<data_dir>/nbapps.db``, WAL, foreign keys, busy timeout) and PostgreSQL
(``postgresql+psycopg://...``) behave the same; the test suite runs on both.
"""
from __future__ import annotations

from ..slugs import slugify
from .apps import AppsMixin
from .audit import AuditMixin
from .db import CatalogBase, CatalogUnavailable, SchemaTooNew, open_catalog
from .jobs import JobInfo, JobsMixin, QueueFull
from .replicas import ReplicaInfo, ReplicasMixin
from .runs import RunInfo, RunQueueFull, RunsMixin, TooManyRuns
from .schedules import AppHealth, ScheduleInfo, SchedulesMixin
from .usage import UsageMixin
from .users import UsersMixin
from .values import (
    AppDetail,
    AppPage,
    AppSummary,
    AuditEvent,
    ReviewInfo,
    Submission,
    TokenInfo,
    UsagePoint,
    UserInfo,
    VersionInfo,
)
from .versions import VersionsMixin, normalize_tags


class Catalog(UsersMixin, VersionsMixin, JobsMixin, RunsMixin, SchedulesMixin, AppsMixin,
              AuditMixin, UsageMixin, ReplicasMixin, CatalogBase):
    """The catalog facade; see the mixins for the methods by concern."""


__all__ = [
    "AppDetail", "AppPage", "AppSummary", "AuditEvent", "Catalog", "CatalogUnavailable",
    "AppHealth", "JobInfo", "QueueFull", "ReplicaInfo", "RunInfo", "RunQueueFull",
    "ScheduleInfo", "TooManyRuns",
    "ReviewInfo", "SchemaTooNew", "Submission", "TokenInfo", "UsagePoint", "UserInfo",
    "VersionInfo", "normalize_tags", "open_catalog", "slugify",
]
