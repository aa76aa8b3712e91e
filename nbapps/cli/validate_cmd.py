"""``nbapps validate PATH...``: check notebooks against the app rules and run them.

Exit status: 0 clean (warnings allowed), 1 error findings, 2 usage error (e.g. a path that does
not exist, NBA105), 3 a notebook failed to run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .argtypes import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, positive


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check notebooks against the app rules and run them",
        description="Check notebooks (files, or folders of *.ipynb) against the app rules, then "
                    "run each with its default parameters and its test parameter sets. Exit "
                    "status: 0 clean (warnings allowed), 1 errors found, 2 usage error, 3 a "
                    "notebook failed to run.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="notebook file or folder")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="output format (default: text)")
    parser.add_argument("--no-execute", action="store_true",
                        help="static checks only: do not run the notebooks")
    parser.add_argument("--timeout", type=positive(float), default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="limit for each run of a notebook (default: 600)")
    parser.add_argument("--cell-timeout", type=positive(float), default=DEFAULT_CELL_TIMEOUT,
                        metavar="SECONDS",
                        help="limit for one cell unless the notebook sets metadata.nbapps.timeout"
                             " (default: 120)")
    parser.add_argument("--workers", type=positive(int), default=None, metavar="N",
                        help="notebooks validated in parallel (default: one per core)")
    parser.add_argument("--max-output-mb", type=positive(float), default=5, metavar="MB",
                        help="limit for the stored outputs of a notebook (default: 5)")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="run with this kernel instead of the notebook's own")
    parser.set_defaults(handler=run)


def use_color(stream: Any) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def run(args: argparse.Namespace) -> int:
    # imported here: nbformat's import is slow, and every other command would pay for it
    from ..validate import (
        ValidationSettings,
        exit_code,
        render_json,
        render_text,
        validate_paths,
    )

    settings = ValidationSettings(
        execute=not args.no_execute,
        cell_timeout=args.cell_timeout,
        total_timeout=args.timeout,
        max_output_bytes=int(args.max_output_mb * 1024 * 1024),
        kernel_name=args.kernel,
    )
    start = time.perf_counter()
    reports = validate_paths(args.paths, settings, workers=args.workers,
                             progress=sys.stderr.isatty())
    elapsed = time.perf_counter() - start
    if args.format == "json":
        sys.stdout.write(render_json(reports, elapsed=elapsed))
    else:
        sys.stdout.write(render_text(reports, color=use_color(sys.stdout), elapsed=elapsed))
    sys.stdout.flush()
    return exit_code(reports)
