"""``nbapps runs``: run approved apps with parameters, over the gallery's API.

    nbapps runs create SLUG [-p NAME VALUE ...] [--batch FILE.json] [--version N]
                            [--wait] [--download DIR]
    nbapps runs list SLUG
    nbapps runs show ID
    nbapps runs cancel ID

``-p`` values are text, read by the gallery like URL query values of the app (``-p n 5`` gives
the int 5 for an int parameter). ``--batch`` is a JSON file holding a list of parameter objects
(one run each; ``-p`` values are added to every set). ``--download DIR`` waits for the runs and
writes each run's outputs into ``DIR`` (``DIR/<run id>/`` for a batch; the PDF report is
printed by the gallery at that first download). Exit status 1 when a
waited-for run did not pass.

The gallery and token come from ``--gallery``/``--token``, ``NBAPPS_GALLERY``/``NBAPPS_TOKEN`` or
``~/.config/nbapps/config.toml``. ``--format json`` prints the API's JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from ..client import GalleryClient
from ..errors import UsageError
from .client_opts import add_client_options, client_from, print_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("runs", help="run approved apps with parameters",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="runs_command", metavar="ACTION",
                                parser_class=type(parser))
    sub.required = True

    p = sub.add_parser("create", help="queue a run (or a batch) of an app")
    p.add_argument("slug")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="a parameter value (repeatable)")
    p.add_argument("--batch", type=Path, metavar="FILE.json",
                   help="a JSON list of parameter objects: one run each")
    p.add_argument("--version", type=int, help="an approved version number (default: live)")
    p.add_argument("--wait", action="store_true", help="wait until the runs have finished")
    p.add_argument("--download", type=Path, metavar="DIR",
                   help="wait, then write the runs' outputs into DIR")
    p.add_argument("--timeout", type=float, default=3600.0,
                   help="seconds to wait at most (default: 3600)")
    add_client_options(p)
    p.set_defaults(handler=cmd_create)

    p = sub.add_parser("list", help="an app's runs, newest first")
    p.add_argument("slug")
    p.add_argument("--limit", type=int, default=20)
    add_client_options(p)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="one run: state, findings, result, outputs")
    p.add_argument("id", type=int)
    add_client_options(p)
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("cancel", help="cancel a queued or running run (yours, or as admin)")
    p.add_argument("id", type=int)
    add_client_options(p)
    p.set_defaults(handler=cmd_cancel)


def _line(r: dict[str, Any]) -> str:
    params = ", ".join(f"{k}={v!r}" for k, v in (r.get("parameters") or {}).items())
    where = f" (#{r['queue_position']} in queue)" if r.get("queue_position") else ""
    took = f" {r['seconds']:.1f}s" if r.get("seconds") is not None else ""
    return (f"#{r['id']:<6} {r['state']:<9}{where}{took}  {r['app']} v{r['version']}  "
            f"{params or 'defaults'}  by {r.get('owner') or r.get('origin')}  "
            f"{str(r.get('created_at', ''))[:16]}")


def parameter_sets(args: argparse.Namespace) -> list[dict[str, Any]]:
    given = {name: value for name, value in args.parameter}
    if args.batch is None:
        return [given]
    try:
        data = json.loads(args.batch.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the batch file {args.batch}: {exc}",
                         code="NBA378") from None
    if not isinstance(data, list) or not data or not all(isinstance(d, dict) for d in data):
        raise UsageError(f"{args.batch} must hold a JSON list of parameter objects",
                         code="NBA378")
    return [{**d, **given} for d in data]


def _safe(name: str) -> Path | None:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return Path(*rel.parts)


def _write_bytes(target: Path, data: bytes) -> None:
    """Replace ``target`` at once (temp file beside it, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(client: GalleryClient, run: dict[str, Any], folder: Path) -> list[Path]:
    """Write every output of ``run`` into ``folder`` (``report.pdf`` too: the gallery prints it
    when first asked for, ``on_request``); returns the paths written."""
    written = []
    for name in sorted({*(run.get("artifacts") or {}), *(run.get("artifact_urls") or {})}):
        rel = _safe(name)
        if rel is None:
            continue
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(target, client.run_artifact(run["id"], name))
        written.append(target)
    return written


def cmd_create(args: argparse.Namespace) -> int:
    sets = parameter_sets(args)
    with client_from(args) as client:
        answer = client.create_runs(args.slug, sets, version=args.version)
        runs = answer["runs"]
        if not (args.wait or args.download):
            if args.format == "json":
                print_json(answer)
            else:
                for r in runs:
                    sys.stdout.write(_line(r) + "\n")
            return 0
        if args.format == "text":
            for r in runs:
                sys.stderr.write(f"queued run #{r['id']}\n")
        finished = [client.wait_for_run(r["id"], args.timeout) for r in runs]
        for r in finished:
            if args.download is not None:
                folder = args.download / str(r["id"]) if len(finished) > 1 else args.download
                for path in download(client, r, folder):
                    if args.format == "text":
                        sys.stderr.write(f"  wrote {path}\n")
    if args.format == "json":
        print_json({"runs": finished, "batch": answer.get("batch")})
    else:
        for r in finished:
            sys.stdout.write(_line(r) + "\n")
            _findings(r)
            if r.get("result"):
                sys.stdout.write("  result: " + json.dumps(r["result"], default=str) + "\n")
    return 0 if all(r["state"] == "passed" for r in finished) else 1


def _findings(r: dict[str, Any]) -> None:
    for f in r.get("findings") or []:
        sys.stdout.write(f"  {f.get('severity', 'error')} {f.get('code')}: "
                         f"{f.get('message')}\n")


def cmd_list(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        items = client.runs(args.slug, limit=args.limit)
    if args.format == "json":
        print_json(items)
        return 0
    if not items:
        sys.stderr.write("no runs\n")
    for r in items:
        sys.stdout.write(_line(r) + "\n")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        r = client.run(args.id)
    if args.format == "json":
        print_json(r)
        return 0
    sys.stdout.write(_line(r) + "\n")
    _findings(r)
    if r.get("result"):
        sys.stdout.write("  result: " + json.dumps(r["result"], default=str) + "\n")
    later = set(r.get("on_request") or [])
    for name, url in sorted((r.get("artifact_urls") or {}).items()):
        note = " (made when first downloaded)" if name in later else ""
        sys.stdout.write(f"  {name}: {url}{note}\n")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with client_from(args) as client:
        r = client.cancel_run(args.id)
    if args.format == "json":
        print_json(r)
    else:
        sys.stdout.write(f"run #{r['id']} {r['state']}\n")
    return 0
