"""Engine, sessions and migrations of the catalog.

:func:`open_catalog` creates the engine (SQLite: WAL, foreign keys, busy timeout, and a real
``BEGIN``/``BEGIN IMMEDIATE`` instead of pysqlite's implicit transactions; PostgreSQL: psycopg 3,
pre-ping), then brings the schema to the newest revision with Alembic's command API using the
scripts shipped in ``nbapps/catalog/migrations`` (no ``alembic.ini``). A database stamped with a
revision this nbapps does not know was migrated by a newer nbapps: refused with NBA306.

Write transactions on SQLite start with ``BEGIN IMMEDIATE`` so writers queue on the busy timeout
instead of failing with "database is locked" when they upgrade a read lock; reads use a plain
deferred ``BEGIN`` and never block writers (WAL).
"""
from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..datadir import prepare_sqlite_file, resolve_data_dir, resolve_db_url
from ..errors import NbappsError

if TYPE_CHECKING:
    from . import Catalog

log = logging.getLogger("nbapps.catalog")

SQLITE_BUSY_TIMEOUT_MS = 15_000
#: the PostgreSQL channel on which approvals and rollbacks are announced to gallery replicas
LIVE_CHANNEL = "nbapps_live_versions"
#: the PostgreSQL channel on which a replica tells the others it changed what listings show
#: (curation, submissions): they drop their cached listings
CATALOG_CHANNEL = "nbapps_catalog_changed"
_PG_MIGRATION_LOCK = 0x6E6261707073  # "nbapps": pg_advisory_xact_lock key for migrations


class SchemaTooNew(NbappsError):
    code = "NBA306"
    http_status = 500
    exit_code = 1


class CatalogUnavailable(NbappsError):
    code = "NBA313"
    http_status = 503
    exit_code = 1


def migrations_dir() -> Path:
    return Path(str(resources.files("nbapps.catalog") / "migrations"))


def alembic_config(connection: Any = None) -> Any:
    """Alembic ``Config`` pointing at the shipped migrations (optionally bound to a connection)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _sqlite_engine(url: str, echo: bool) -> Engine:
    u = make_url(url)
    if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
        prepare_sqlite_file(Path(u.database).expanduser())  # 0600, also under umask 022
    engine = create_engine(
        url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                                      "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see "begin" below)
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cur)
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get("nbapps_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _enable_wal(cur: Any) -> None:
    """Switch the database to WAL (a lasting property of the file, so normally only the very
    first connection changes it).

    The switch needs an exclusive lock and SQLite answers "database is locked" at once, without
    waiting for ``busy_timeout``, while another connection holds one: several processes opening
    a brand-new catalog together hit that (measured: 8 of 60 rounds of 4 threads). So wait here,
    up to the busy timeout.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def normalize_db_url(url: str) -> str:
    """``postgres://`` / ``postgresql://`` → ``postgresql+psycopg://`` (psycopg 3 is the driver
    nbapps installs; SQLAlchemy's default would be psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _make_engine(url: str, echo: bool = False) -> Engine:
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, echo)
    if backend == "postgresql":
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise NbappsError(f"unsupported catalog database {backend!r} (use sqlite or postgresql)",
                      code="NBA313")


def migrate(engine: Engine) -> str:
    """Upgrade the schema to head (refusing unknown revisions); return the revision now in use."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    with engine.connect().execution_options(nbapps_write=True) as conn:
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            current = MigrationContext.configure(conn).get_current_revision()
            if current is not None:
                try:
                    known = script.get_revision(current)
                except Exception:  # alembic raises several types for unknown revisions
                    known = None
                if known is None:
                    raise SchemaTooNew(
                        f"the catalog database is at schema revision {current!r}, which this "
                        f"nbapps does not know (newest known: {head!r}); it was migrated by a "
                        "newer nbapps",
                    )
            if current != head:
                log.info("migrating catalog schema %s -> %s", current, head)
                command.upgrade(alembic_config(conn), "head")
        return head or ""


class CatalogBase:
    """Engine + session plumbing shared by the repository mixins."""

    def __init__(self, engine: Engine, *, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect: str = engine.dialect.name
        self._read_sessions = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(
            engine.execution_options(nbapps_write=True), expire_on_commit=False
        )
        #: failed logins allowed per user name + IP within ``login_window_s``
        self.login_max_failures = 5
        #: failed logins allowed per IP (all user names) within ``login_window_s``
        self.login_max_failures_per_ip = 50
        self.login_window_s = 15 * 60

    # -- sessions ----------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        """A read-only session (deferred transaction, rolled back at the end)."""
        with _db_errors(), self._read_sessions() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def _read_core(self) -> Iterator[Connection]:
        """A Core connection for hot read paths (one deferred transaction, rolled back)."""
        with _db_errors(), self.engine.connect() as conn:
            try:
                yield conn
            finally:
                conn.rollback()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction: committed if the block succeeds, rolled back otherwise."""
        with _db_errors(), self._write_sessions() as session, session.begin():
            yield session

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> CatalogBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def ping(self) -> bool:
        """True if the database answers (for health checks)."""
        try:
            with self._read() as s:
                s.execute(text("SELECT 1"))
            return True
        except NbappsError:
            return False

    def announce_change(self, sender: str) -> bool:
        """``NOTIFY`` on :data:`CATALOG_CHANNEL` (payload ``sender``, in a transaction of its
        own, after the change was committed); False and nothing sent on SQLite."""
        if self.dialect != "postgresql":
            return False
        with _db_errors(), self.engine.begin() as conn:
            conn.execute(text("SELECT pg_notify(:channel, :sender)"),
                         {"channel": CATALOG_CHANNEL, "sender": sender})
        return True

    def __repr__(self) -> str:
        return f"<Catalog {make_url(self.url).render_as_string(hide_password=True)}>"


def announce_live_change(s: Session, slug: str) -> None:
    """Queue a ``NOTIFY`` of ``slug``'s new live version in the write transaction ``s``.

    PostgreSQL delivers it when the transaction commits and drops it when it rolls back, so
    replicas hear of exactly the decisions that were recorded, even when the deciding process
    dies right after its commit. SQLite has no notifications: its replicas poll.
    """
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text("SELECT pg_notify(:channel, :slug)"),
                  {"channel": LIVE_CHANNEL, "slug": slug})


@contextmanager
def _db_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        log.debug("catalog database error", exc_info=True)
        raise CatalogUnavailable(f"catalog database error: {exc.orig or exc}") from exc


def open_catalog(
    url: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    migrate_schema: bool = True,
    echo: bool = False,
) -> Catalog:
    """Open (creating/migrating as needed) the catalog at ``url``.

    ``url`` defaults to ``$NBAPPS_DB_URL`` or ``sqlite:///<data_dir>/nbapps.db``. Raises
    NBA306 on a schema newer than this nbapps, NBA313 when the database cannot be reached.
    """
    from . import Catalog

    resolved = normalize_db_url(
        resolve_db_url(url, resolve_data_dir(data_dir) if url is None else None))
    engine = _make_engine(resolved, echo=echo)
    try:
        if migrate_schema:
            migrate(engine)
    except OperationalError as exc:
        engine.dispose()
        raise CatalogUnavailable(f"cannot open the catalog database: {exc.orig or exc}") from exc
    except (SQLAlchemyError, NbappsError):
        engine.dispose()
        raise
    return Catalog(engine, url=resolved)
