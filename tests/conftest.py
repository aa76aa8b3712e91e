"""Shared fixtures. Fixtures that start servers pick free loopback ports and always stop them."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.nbfactory import make_notebook, write_notebook


@pytest.fixture
def app_notebook_path(tmp_path: Path) -> Path:
    """A valid app notebook written to a temporary folder."""
    return write_notebook(make_notebook(), tmp_path / "app" / "app.ipynb")


# -- catalog (data layer): every catalog test runs on SQLite and on a real PostgreSQL -----------

@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL server on a free loopback port for the whole run (always stopped).

    Missing binaries: the fixture fails when ``CI`` is set, else the PostgreSQL tests skip.
    """
    import os

    from tests.pg import PostgresServer, find_pg_bin

    bin_dir = find_pg_bin()
    if bin_dir is None:
        msg = "PostgreSQL binaries not found; run scripts/install-system-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """A real S3-compatible server (moto's server mode, :mod:`tests.s3`) on a loopback port for
    the whole run (always stopped); each test makes its own buckets (``new_bucket_url``)."""
    from tests.s3 import MotoServer

    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path):
    """URL of a fresh catalog database: a new SQLite file (created and migrated on first open)
    or a new PostgreSQL database (a copy of a migrated template), dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'nbapps.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name, url = server.fresh_database()
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture
def catalog(catalog_url):
    """An open :class:`nbapps.catalog.Catalog` on ``catalog_url`` (closed afterwards)."""
    from nbapps.catalog import open_catalog

    cat = open_catalog(catalog_url)
    try:
        yield cat
    finally:
        cat.close()
