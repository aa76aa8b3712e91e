"""``nbapps db upgrade``: bring the catalog's schema to this nbapps' newest revision, alone.

    nbapps db upgrade [--db-url URL | --data-dir DIR]

For a deploy job that migrates once before the gallery replicas start (each replica also
migrates at start, under a PostgreSQL advisory lock, so this is an order, not a requirement).
Prints what it did; running it again changes nothing. A database migrated by a newer nbapps is
refused (NBA306), an unreachable one is NBA313. The catalog is found like ``nbapps user``'s
(:mod:`.catalog_opts`); it is created when missing (an empty database is migrated).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .catalog_opts import add_catalog_options, catalog_location


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="manage the catalog database (migrations)",
                                   description="Manage the catalog database: `nbapps db "
                                               "upgrade` runs its migrations and exits.")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("upgrade", help="run the catalog's schema migrations and exit")
    add_catalog_options(p)
    p.set_defaults(handler=cmd_upgrade)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from ..catalog import open_catalog

    location = catalog_location(args)
    with open_catalog(location.db_url, migrate_schema=False) as probe:
        before = _revision(probe)
    with open_catalog(location.db_url) as catalog:  # migrates (refuses a newer schema)
        after = catalog.schema_revision()
    if before == after:
        print(f"catalog of {location.where}: schema already at {after}; nothing to do")
    else:
        print(f"catalog of {location.where}: schema migrated {before or '(empty)'} -> {after}")
    sys.stdout.flush()
    return 0


def _revision(catalog: Any) -> str | None:
    from sqlalchemy.exc import OperationalError

    from ..catalog import CatalogUnavailable

    try:
        return catalog.schema_revision()  # type: ignore[no-any-return]
    except OperationalError as exc:
        raise CatalogUnavailable(f"cannot open the catalog database: {exc.orig or exc}") \
            from exc
