"""``--data-dir`` / ``--db-url`` for the commands that open the catalog directly (``nbapps
user``), and opening it so that only commands that may create a catalog ever do.

The data dir is found as everywhere else (:mod:`nbapps.datadir_lookup`). When the catalog or
a user is missing, the error names the data dir and where that choice came from, since the usual
cause is a command run with another data dir than the gallery's.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datadir import DB_FILENAME, ENV_DB_URL
from ..errors import NotFound


def add_catalog_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data dir (default: $NBAPPS_DATA_DIR, else "
                        "c.NbappsServer.data_dir in jupyter_nbapps_config.py here or on the "
                        "Jupyter config path, else the user data dir)")
    parser.add_argument("--db-url", help="catalog database URL (default: $NBAPPS_DB_URL or "
                        "sqlite in the data dir)")


@dataclass(frozen=True)
class CatalogLocation:
    """The catalog a command uses and how it was chosen (for messages)."""

    db_url: str
    where: str

    def missing_user(self, exc: NotFound) -> NotFound:
        """``exc`` (no such user) with the catalog it was looked up in."""
        return NotFound(f"{exc.message} in the catalog of {self.where}", code=exc.code,
                        hint=exc.hint, details=exc.details)


def catalog_location(args: argparse.Namespace) -> CatalogLocation:
    import os

    from ..datadir_lookup import locate_data_dir

    db_url = getattr(args, "db_url", None)
    if db_url:
        return CatalogLocation(db_url, f"--db-url {_shown(db_url)}")
    env_url = os.environ.get(ENV_DB_URL)
    if env_url:
        return CatalogLocation(env_url, f"${ENV_DB_URL} {_shown(env_url)}")
    choice = locate_data_dir(getattr(args, "data_dir", None))
    return CatalogLocation(f"sqlite:///{choice.path / DB_FILENAME}",
                           f"data dir {choice.describe()}")


def _shown(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for a message
        return "(unparsable URL)"


def catalog_exists(db_url: str) -> bool:
    """Whether ``db_url`` holds an nbapps catalog, without creating anything."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.engine import make_url

    from ..catalog.db import normalize_db_url

    url = make_url(normalize_db_url(db_url))
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:"):
            return False
        path = Path(database)
        return path.is_file() and path.stat().st_size > 0
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).has_table("alembic_version")
    except Exception:  # noqa: BLE001 - unreachable: open_catalog says why (NBA313)
        return True
    finally:
        engine.dispose()


def open_cli_catalog(args: argparse.Namespace, *,
                     create: bool = False) -> tuple[Any, CatalogLocation]:
    """The catalog for this command and its location. Unless ``create``, a missing catalog is
    NotFound (NBA302) naming the data dir, and nothing is created."""
    from ..catalog import open_catalog

    location = catalog_location(args)
    if not create and not catalog_exists(location.db_url):
        raise NotFound(f"no catalog in {location.where}",
                       hint="Run the command where the gallery's data dir is found (or pass "
                       "--data-dir / set $NBAPPS_DATA_DIR), or create the first user with "
                       "`nbapps user add NAME --role admin`.")
    return open_catalog(location.db_url), location
