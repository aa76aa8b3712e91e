"""``nbapps store``: the bundle store of a gallery.

    nbapps store check [--store-url URL] [--store-options JSON] [--format json] [--threads N]
    nbapps store gc [--min-age 1h] [--delete [--force]] [--json]

``check`` reads every object the catalog names (sources, legacy archives, thumbnails, check
artifacts) and checks that it is there and is what its address says
(:mod:`nbapps.store_check`). Findings go to stdout, one line each (``NBA315 <key>: missing
... (version 3 (sales v2) source)``), then a summary; exit code 0 when all is well, 1 when any
object is missing (NBA315), holds other bytes (NBA316) or cannot be read (NBA312).

``gc`` lists what the store holds that no catalog row names (blobs no job or thumbnail names,
sources and legacy archives no version names, ``.tmp-*`` leftovers of interrupted writes),
older than ``--min-age``: counts and bytes per kind and the first names; ``--delete`` removes
them, refused (NBA398) while a job runs unless ``--force`` (:mod:`nbapps.store_gc`). Exit code
0, 1 when refused, stopped or an object could not be deleted (NBA399).

The catalog is found as by every command (``--data-dir``/``--db-url``, see
:mod:`nbapps.cli.catalog_opts`); the store as ``nbapps serve`` finds it: ``--store-url``, else
``$NBAPPS_STORE_URL``, else ``c.NbappsServer.store_url`` in ``jupyter_nbapps_config.py``, else
``<data dir>/bundles``; its storage options from ``--store-options`` (a JSON object), else
``$NBAPPS_STORE_OPTIONS``, else ``c.NbappsServer.store_options``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .catalog_opts import add_catalog_options, open_cli_catalog


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("store", help="check or clean up the bundle store",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="store_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True
    p = sub.add_parser("check", help="verify that every object the catalog names is stored "
                       "and matches its address")
    add_catalog_options(p)
    _store_options(p)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--threads", type=int, default=8, help="objects read at once (default 8)")
    p.set_defaults(handler=cmd_check)

    g = sub.add_parser("gc", help="list (--delete: remove) what the store holds that no "
                       "catalog row names")
    add_catalog_options(g)
    _store_options(g)
    g.add_argument("--min-age", type=age, default="1h", metavar="AGE",
                   help="only objects older than this are weighed: seconds, or a number with "
                   "s, m, h or d (default 1h: a worker may have stored an object it has not "
                   "recorded yet)")
    g.add_argument("--delete", action="store_true", help="delete them (default: a dry run)")
    g.add_argument("--force", action="store_true", help="delete even while the catalog shows "
                   "jobs running (only when the gallery is stopped)")
    g.add_argument("--format", choices=["text", "json"], default="text")
    g.add_argument("--json", dest="format", action="store_const", const="json",
                   help="same as --format json")
    g.set_defaults(handler=cmd_gc)


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-url", help="fsspec URL of the bundle store (default: "
                   "$NBAPPS_STORE_URL, c.NbappsServer.store_url, else <data dir>/bundles)")
    p.add_argument("--store-options", help="fsspec storage options as a JSON object (default: "
                   "$NBAPPS_STORE_OPTIONS, else c.NbappsServer.store_options)")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def age(text: str) -> float:
    """An argparse type: seconds, or a number with a unit (``90``, ``30m``, ``1h``, ``7d``)."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0)
    try:
        seconds = float(value[:-1] if unit else value) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an age (seconds, or 30m, 1h, 7d): {text!r}"
                                         ) from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return seconds


def store_location(args: argparse.Namespace) -> tuple[str | None, dict[str, Any] | None]:
    """(URL, storage options) from the flags, the environment and the config files; None
    where the default applies (:func:`nbapps.store.resolve_store`)."""
    from ..datadir_lookup import configured_setting
    from ..store import ENV_STORE_OPTIONS, ENV_STORE_URL, parse_store_options

    url = args.store_url or None
    if url is None and not os.environ.get(ENV_STORE_URL):
        found = configured_setting("store_url")
        url = str(found[0]) if found else None
    options: dict[str, Any] | None = None
    if args.store_options:
        options = parse_store_options(args.store_options, "--store-options")
    elif not os.environ.get(ENV_STORE_OPTIONS, "").strip():
        found = configured_setting("store_options")
        options = dict(found[0]) if found and hasattr(found[0], "keys") else None
    return url, options


def _open_store(args: argparse.Namespace) -> Any:
    from ..datadir_lookup import locate_data_dir
    from ..store import open_store

    url, options = store_location(args)
    data_dir = None if url else locate_data_dir(args.data_dir).path
    return open_store(url, data_dir, options)


def cmd_check(args: argparse.Namespace) -> int:
    from ..store_check import check_store

    catalog, _location = open_cli_catalog(args)
    try:
        report = check_store(catalog, _open_store(args), threads=args.threads)
    finally:
        catalog.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        for f in report.findings:
            sys.stdout.write(f"{f.code} {f.key}: {f.message} ({'; '.join(f.refs)})\n")
        sys.stdout.write(("ok: " if report.clean else "PROBLEMS: ") + report.summary() + "\n")
    return 0 if report.clean else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from ..store_gc import collect_garbage, summary_lines

    catalog, _location = open_cli_catalog(args)
    try:
        report = collect_garbage(catalog, _open_store(args), min_age=args.min_age,
                                 delete=args.delete, force=args.force)
    finally:
        catalog.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.writelines(line + "\n" for line in summary_lines(report))
    return 0 if report.complete else 1
