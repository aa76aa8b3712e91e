"""Migrations: applied at open, idempotent, models match them, newer schema refused (NBA306)."""
from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from nbapps.catalog import open_catalog
from nbapps.catalog.db import SchemaTooNew, head_revision
from nbapps.catalog.models import Base
from nbapps.datadir import default_db_url, default_store_url, resolve_db_url


def test_open_migrates_to_head_and_reopen_is_a_noop(catalog_url):
    cat = open_catalog(catalog_url)
    try:
        assert cat.schema_revision() == head_revision()
        assert cat.ping()
    finally:
        cat.close()
    again = open_catalog(catalog_url)
    try:
        assert again.schema_revision() == head_revision()
    finally:
        again.close()


def test_models_match_migrations(catalog):
    with catalog.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, Base.metadata)
    ignored = {"apps_fts", "apps_fts_data", "apps_fts_idx", "apps_fts_docsize",
               "apps_fts_config", "alembic_version"}

    def relevant(d):
        flat = d if isinstance(d, tuple) else d[0]
        text_ = repr(flat)
        if "search_vector" in text_ or "ix_apps_search_vector" in text_:
            return False
        return not any(name in text_ for name in ignored)

    assert [d for d in diffs if relevant(d)] == []


def test_newer_schema_is_refused(catalog_url):
    open_catalog(catalog_url).close()
    engine = create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed9999'"))
    finally:
        engine.dispose()
    with pytest.raises(SchemaTooNew) as err:
        open_catalog(catalog_url)
    assert err.value.code == "NBA306"
    assert "f00dfeed9999" in err.value.message and "newer nbapps" in err.value.message


def test_concurrent_first_opens(tmp_path, request):
    """Several processes/threads opening a brand-new catalog at once all succeed."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run():
        barrier.wait()
        try:
            open_catalog(url).close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []


@pytest.mark.postgres
def test_concurrent_first_opens_postgresql(pg_server):
    name, url = pg_server.fresh_database(migrated=False)
    try:
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def run():
            barrier.wait()
            try:
                open_catalog(url).close()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
    finally:
        pg_server.drop_database(name)


def test_sqlite_settings(tmp_path):
    cat = open_catalog(f"sqlite:///{tmp_path / 'x' / 'nbapps.db'}")
    try:
        with cat.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    finally:
        cat.close()


def test_default_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("NBAPPS_DATA_DIR", str(tmp_path / "dd"))
    monkeypatch.delenv("NBAPPS_DB_URL", raising=False)
    assert default_db_url() == f"sqlite:///{tmp_path / 'dd' / 'nbapps.db'}"
    assert default_store_url() == f"file://{tmp_path / 'dd' / 'bundles'}"
    assert resolve_db_url(None, tmp_path / "o") == f"sqlite:///{tmp_path / 'o' / 'nbapps.db'}"
    assert resolve_db_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    monkeypatch.setenv("NBAPPS_DB_URL", "sqlite:////elsewhere.db")
    assert resolve_db_url() == "sqlite:////elsewhere.db"
    monkeypatch.delenv("NBAPPS_DB_URL")
    cat = open_catalog()
    try:
        assert (tmp_path / "dd" / "nbapps.db").exists()
    finally:
        cat.close()


def test_unreachable_database_is_a_clear_error():
    from nbapps.catalog.db import CatalogUnavailable
    from tests.pg import free_port

    with pytest.raises(CatalogUnavailable) as err:
        open_catalog(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
                     "?connect_timeout=2")
    assert err.value.code == "NBA313"
