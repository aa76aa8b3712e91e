"""``nbapps run NB -p NAME VALUE ... [-f params.yaml] -o OUT``: run an app with parameters.

Parameters are checked against the app's contract **before** any kernel starts: ``-p`` values
are text converted with :meth:`ParameterContract.coerce` (repeat ``-p`` for list items), ``-f``
values come typed from a YAML or JSON mapping and are checked with
:meth:`ParameterContract.check`; ``-p`` wins over ``-f`` for the same name. A refusal prints the
problem and the app's parameters and exits 2.

The run happens like the publisher's (:func:`nbapps.execute.run_notebook_file`): a temporary copy
of the declared files, cell and total timeouts. ``OUT`` is written atomically whenever the
notebook ran, also when it failed (the notebook as far as it got, with the error in its cell),
like papermill. Exit status: 0 success, 1 unusable notebook, 2 usage or parameter error, 3 the
run failed (the cell, exception and message are printed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ParameterError, UsageError
from .argtypes import DEFAULT_CELL_TIMEOUT, DEFAULT_TIMEOUT, seconds


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a notebook app with parameters and save the executed notebook",
        description="Run a notebook app with parameters checked against its parameter contract, "
                    "and save the executed notebook. Exit status: 0 success, 1 unusable "
                    "notebook, 2 usage or parameter error, 3 the run failed.",
    )
    parser.add_argument("notebook", metavar="NB", help="the notebook to run")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="a parameter value (repeat the option for several parameters, or "
                             "for the items of a list parameter)")
    parser.add_argument("-f", "--parameters-file", metavar="FILE",
                        help="a YAML or JSON mapping of parameter names to values")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="where to write the executed notebook")
    parser.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="S",
                        help=f"limit for the whole run (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--cell-timeout", type=seconds, default=None, metavar="S",
                        help="limit for one cell (default: the notebook's metadata.nbapps.timeout"
                             f", else {DEFAULT_CELL_TIMEOUT:g})")
    parser.add_argument("--kernel", default=None, metavar="NAME",
                        help="run with this kernel instead of the notebook's own")
    parser.add_argument("--cwd", default=None, metavar="DIR",
                        help="run in this folder as it is (default: a temporary folder with only "
                             "the files the notebook declares in metadata.nbapps.files, as the "
                             "gallery runs it)")
    parser.add_argument("--json", action="store_true",
                        help="print the run's summary as JSON on stdout")
    parser.set_defaults(handler=run)


def read_parameters_file(path: str) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) mapping of parameter values; UsageError NBA104."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"parameter file {path} cannot be read ({exc})", code="NBA104") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise UsageError(f"parameter file {path} is not valid YAML or JSON{at}",
                         code="NBA104") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UsageError(f"parameter file {path} must hold a mapping of parameter names to "
                         "values", code="NBA104")
    return data


def raw_parameters(pairs: list[list[str]]) -> dict[str, str | list[str]]:
    """``-p`` pairs as text values; a name given several times becomes a list of items."""
    raw: dict[str, str | list[str]] = {}
    for name, value in pairs:
        if name in raw:
            previous = raw[name]
            raw[name] = (previous if isinstance(previous, list) else [previous]) + [value]
        else:
            raw[name] = value
    return raw


def describe_contract(contract: Any) -> str:
    """The app's parameters, one per line, for refusal messages."""
    if not len(contract):
        return "This app takes no parameters."
    lines = ["Parameters of this app:"]
    for p in contract.parameters:
        allowed = []
        if p.choices is not None:
            allowed.append("one of " + ", ".join(json.dumps(c) for c in p.choices))
        if p.min is not None:
            allowed.append(f"min {p.min!r}")
        if p.max is not None:
            allowed.append(f"max {p.max!r}")
        extra = f"; {', '.join(allowed)}" if allowed else ""
        help_text = f"  {p.help}" if p.help else ""
        lines.append(f"  {p.name} ({p.type}, default {json.dumps(p.default)}{extra}){help_text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..execute import run_notebook_file
    from ..notebook import load_notebook

    if Path(args.output).resolve() == Path(args.notebook).resolve():
        raise UsageError("OUT must not be the notebook itself (it would be overwritten)")
    if args.cwd is not None and not Path(args.cwd).is_dir():
        raise UsageError(f"--cwd {args.cwd}: no such folder", code="NBA105")
    app = load_notebook(args.notebook, name=args.notebook)
    values: dict[str, Any] = {}
    try:
        if args.parameters_file:
            values.update(app.contract.check(read_parameters_file(args.parameters_file)))
        if args.parameter:
            values.update(app.contract.coerce(raw_parameters(args.parameter)))
    except ParameterError as exc:
        sys.stderr.write(f"nbapps: error: {exc.code}: {exc.message}\n")
        sys.stderr.write(describe_contract(app.contract) + "\n")
        return exc.exit_code
    cell_timeout = args.cell_timeout or app.meta.timeout or DEFAULT_CELL_TIMEOUT
    result = run_notebook_file(args.notebook, args.output, values, cell_timeout=cell_timeout,
                               total_timeout=args.timeout, kernel_name=args.kernel,
                               cwd=args.cwd)
    if args.json:
        sys.stdout.write(json.dumps(result.summary(), indent=1) + "\n")
    for finding in result.findings:
        sys.stderr.write(f"{finding.code} {finding.severity.value}: {finding.message}\n")
        if finding.hint and finding.is_error:
            sys.stderr.write(f"  fix: {finding.hint}\n")
    if not result.ok:
        sys.stderr.write(f"nbapps: the run failed; the notebook as far as it ran is in "
                         f"{args.output}\n")
        return 3
    sys.stderr.write(f"ran {args.notebook} in {result.total_seconds:.1f} s; wrote "
                     f"{args.output}\n")
    return 0
