"""Where nbapps keeps its state: the data dir (catalog database + bundle store).

Default: platformdirs' per-user data dir for "nbapps"; ``NBAPPS_DATA_DIR`` overrides it, and
``--data-dir`` on the command line overrides both.
"""
from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_data_dir

ENV_DATA_DIR = "NBAPPS_DATA_DIR"
ENV_DB_URL = "NBAPPS_DB_URL"
DB_FILENAME = "nbapps.db"
BUNDLES_DIRNAME = "bundles"


def default_data_dir() -> Path:
    """``$NBAPPS_DATA_DIR`` if set, else the user data dir (e.g. ~/.local/share/nbapps)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return Path(user_data_dir("nbapps", appauthor=False))


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` (expanded, absolute) or the default; the folder is not created here."""
    path = Path(data_dir).expanduser() if data_dir else default_data_dir()
    return path.absolute()


def default_db_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """SQLite URL of the catalog in ``data_dir``: ``sqlite:///<data_dir>/nbapps.db``."""
    return f"sqlite:///{resolve_data_dir(data_dir) / DB_FILENAME}"


def default_store_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """fsspec URL of the bundle store in ``data_dir``: ``file://<data_dir>/bundles``."""
    return f"file://{resolve_data_dir(data_dir) / BUNDLES_DIRNAME}"


def resolve_db_url(
    db_url: str | None = None, data_dir: str | os.PathLike[str] | None = None
) -> str:
    """``db_url``, else ``$NBAPPS_DB_URL``, else the SQLite file in the data dir."""
    return db_url or os.environ.get(ENV_DB_URL) or default_db_url(data_dir)
