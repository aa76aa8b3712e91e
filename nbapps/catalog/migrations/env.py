"""Alembic environment of the nbapps catalog.

nbapps runs migrations itself (:func:`nbapps.catalog.db.migrate`) and passes an open connection
in ``config.attributes["connection"]``. Developers writing a new revision can run alembic by
hand with ``NBAPPS_DB_URL`` set and ``script_location`` pointing at this folder.
"""
from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from nbapps.catalog.models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("NBAPPS_DB_URL")
    if not url:
        raise RuntimeError("set NBAPPS_DB_URL to run alembic by hand")
    engine = create_engine(url)
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
