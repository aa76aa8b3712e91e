"""``nbapps bundle NB -o DIR``: validate a notebook, run it and write its bundle.

The bundle goes to ``DIR/<slug>-<sha12>/`` (see :mod:`nbapps.bundle`); its path and content hash
are printed on stdout (``--json``: the manifest's main fields). A notebook with error findings is
not bundled: the findings are printed as ``nbapps validate`` shows them. Exit status: 0 bundled,
1 error findings (or the destination holds something else, NBA205), 2 usage error, 3 the
notebook failed to run.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .argtypes import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, seconds


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bundle",
        help="validate and run a notebook, then write its content-addressed bundle",
        description="Validate a notebook, run it with its default parameters and write a "
                    "content-addressed bundle folder DIR/<slug>-<sha12>. Exit status: 0 bundled, "
                    "1 error findings, 2 usage error, 3 the notebook failed to run.",
    )
    parser.add_argument("notebook", metavar="NB", help="the notebook to bundle")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="folder that receives the bundle folder")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"limit for each run of the notebook (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--cell-timeout", type=seconds, default=DEFAULT_CELL_TIMEOUT,
                        metavar="S", help="limit for one cell unless the notebook sets "
                        f"metadata.nbapps.timeout (default: {DEFAULT_CELL_TIMEOUT:g})")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="run with this kernel instead of the notebook's own")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..bundle import build_bundle
    from ..validate import ValidationSettings, render_text, validate_notebook
    from .validate_cmd import use_color

    settings = ValidationSettings(cell_timeout=args.cell_timeout, total_timeout=args.timeout,
                                  kernel_name=args.kernel)
    report = validate_notebook(args.notebook, settings)
    if report.findings or not report.ok:
        stream = sys.stderr if args.json else sys.stdout
        stream.write(render_text([report], color=use_color(stream)))
    if not report.ok:
        sys.stderr.write(f"nbapps: {args.notebook} not bundled: fix the errors above\n")
        return report.exit_code
    info = build_bundle(args.notebook, args.output, report=report, settings=settings)
    if args.json:
        keys = ("slug", "title", "sha256", "files", "parameters", "kernel", "created")
        out = {"path": str(info.path), **{k: info.manifest.get(k) for k in keys}}
        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    else:
        sys.stdout.write(f"bundle {info.path}\nsha256 {info.sha256}\n")
    return 0
