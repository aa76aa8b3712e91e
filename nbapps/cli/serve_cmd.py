"""``nbapps serve``: run the gallery server (a thin layer over :class:`NbappsServer`).

Every option maps to a trait of ``NbappsServer``, which also reads ``jupyter_nbapps_config.py``
from the Jupyter config path and the current folder; ``--config FILE`` adds one more file.
"""
from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the gallery server",
        description="Serve the gallery (pages, JSON API, review workflow) on 127.0.0.1:8866 by "
                    "default. Configuration: jupyter_nbapps_config.py (Jupyter config path, "
                    "then the current folder), --config FILE, then these options.",
    )
    parser.add_argument("--port", type=int, help="port (default 8866; 0: any free port)")
    parser.add_argument("--ip", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--data-dir", help="data dir (default: $NBAPPS_DATA_DIR or the user "
                        "data dir)")
    parser.add_argument("--db-url", help="catalog database URL (default: sqlite in the data "
                        "dir; or postgresql+psycopg://...)")
    parser.add_argument("--store-url", help="fsspec URL of the bundle store (default: "
                        "<data-dir>/bundles)")
    parser.add_argument("--allow-anonymous-apps", action="store_true", default=None,
                        help="visitors without an account may open live apps")
    parser.add_argument("--public-url", help="URL users reach the gallery at (for links)")
    parser.add_argument("--base-url", help="URL path the gallery is served under behind a "
                        "proxy that keeps the prefix (default /; e.g. /team/gallery/)")
    parser.add_argument("--config", metavar="FILE", help="extra config file, loaded last")
    parser.add_argument("--log-format", choices=("text", "json"), help="log format")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARN", "ERROR"),
                        help="log level (default INFO)")
    parser.add_argument("--set", action="append", default=[], metavar="TRAIT=VALUE",
                        help="any other setting, e.g. --set max_upload_bytes=1000000 or "
                             "--set RuntimeConfiguration.pool_size=4 (repeatable)")
    parser.add_argument("--help-all", action="store_true",
                        help="list every setting (NbappsServer, RuntimeConfiguration) with its "
                             "default, and exit")
    parser.set_defaults(handler=run)


def to_traitlets_argv(args: argparse.Namespace) -> list[str]:
    argv: list[str] = []
    for opt, value in (("port", args.port), ("ip", args.ip), ("data-dir", args.data_dir),
                       ("db-url", args.db_url), ("store-url", args.store_url),
                       ("public-url", args.public_url), ("base-url", args.base_url),
                       ("config", args.config),
                       ("log-format", args.log_format), ("log-level", args.log_level)):
        if value is not None:
            argv.append(f"--{opt}={value}")
    if args.allow_anonymous_apps:
        argv.append("--allow-anonymous-apps")
    if getattr(args, "debug", False):
        argv.append("--debug")
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            from ..errors import UsageError

            raise UsageError(f"--set needs TRAIT=VALUE, got {item!r}", code="NBA100")
        if "." not in key:
            key = f"NbappsServer.{key}"
        argv.append(f"--{key}={value}")
    return argv


def run(args: argparse.Namespace) -> int:
    from ..server.app import NbappsServer

    server = NbappsServer()
    if getattr(args, "help_all", False):
        server.print_help(classes=True)
        return 0
    server.initialize(to_traitlets_argv(args))
    server.start()
    return 0
