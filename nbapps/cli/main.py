"""Entry point of the ``nbapps`` command.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``handler`` (a function ``(args) -> int``). This module maps
:class:`~nbapps.errors.NbappsError` to a one-line message and the error's exit code; tracebacks
are shown only with ``--debug``.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import NbappsError

# sub-command modules, in the order shown by --help; a module that is missing is skipped so
# parts can land one at a time.
COMMAND_MODULES = [
    "validate", "run", "bundle", "publish", "review", "serve", "user", "db", "store", "init",
    "deploy", "runs",
]

log = logging.getLogger("nbapps")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's usage errors: code NBA100, exit 2
        self.print_usage(sys.stderr)
        sys.stderr.write(f"nbapps: error: NBA100: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nbapps", description="Turn Jupyter notebooks into governed micro apps.")
    parser.add_argument("--version", action="version", version=f"nbapps {__version__}")
    parser.add_argument("--debug", action="store_true", help="show debug logs and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"nbapps.cli.{name}_cmd")
        except ModuleNotFoundError as exc:
            if exc.name == f"nbapps.cli.{name}_cmd":
                continue
            raise
        module.register(sub)
    return parser


def configure_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("nbapps")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    # papermill logs a cell timeout itself, beside our coded finding: keep it for --debug only
    papermill = logging.getLogger("papermill")
    papermill.handlers[:] = [handler]
    papermill.propagate = False
    papermill.setLevel(logging.DEBUG if debug else logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.debug)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args) or 0)
    except NbappsError as exc:
        log.debug("command failed", exc_info=True)
        sys.stderr.write(f"nbapps: error: {exc.code}: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  fix: {exc.hint}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("nbapps: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
