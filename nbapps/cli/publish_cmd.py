"""``nbapps publish NOTEBOOK``: validate locally, submit to a gallery, follow the gallery's check.

1. The notebook is validated here first, as ``nbapps validate`` does (a fast first check: rules,
   then a run with its default and test parameters; ``--no-run``: rules only). Error findings
   stop here, exit status as ``nbapps validate``.
2. Its source (the notebook and the data files it declares, nothing else) is uploaded to
   ``POST /api/submissions``. Publishing identical content again returns the same submission.
3. The gallery checks the stored source itself, confined (DESIGN.md decision 7): this command
   follows that check (place in the queue, running, then the findings, printed as ``nbapps
   validate`` prints them) and exits 0 when it passed (the submission waits for a reviewer),
   1 when it failed. ``--no-wait`` returns right after the upload.

The gallery and token come from ``--gallery``/``--token``, ``NBAPPS_GALLERY``/``NBAPPS_TOKEN`` or
``~/.config/nbapps/config.toml`` (keys ``gallery`` and ``token``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..client import ClientSettings, GalleryClient
from ..errors import UsageError
from .argtypes import positive
from .client_opts import add_client_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "publish", help="validate a notebook, submit it to a gallery and follow its check",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("notebook", metavar="NOTEBOOK", help="the app notebook (.ipynb)")
    parser.add_argument("--slug", help="app slug in the gallery (default: from the title)")
    parser.add_argument("--no-run", action="store_true",
                        help="check the rules locally without running the notebook (the gallery "
                             "runs it anyway)")
    parser.add_argument("--no-wait", action="store_true",
                        help="return after the upload, without following the gallery's check")
    parser.add_argument("--wait-timeout", type=positive(float), default=1800.0,
                        metavar="SECONDS",
                        help="how long to follow the gallery's check (default: 1800)")
    add_client_options(parser)
    parser.set_defaults(handler=run)


def local_check(notebook: Path, *, execute: bool = True) -> Any:
    """``nbapps validate``'s report of ``notebook`` (run unless ``execute`` is False)."""
    from ..validate import ValidationSettings, validate_notebook

    return validate_notebook(notebook, ValidationSettings(execute=execute))


def build_archive(notebook: Path) -> tuple[bytes, str]:
    """The source archive of ``notebook`` (:func:`nbapps.bundle.pack_notebook_source`):
    (archive bytes, content hash)."""
    from ..bundle import pack_notebook_source

    return pack_notebook_source(notebook)


def publish(notebook: Path, client: GalleryClient, *, slug: str | None = None,
            execute: bool = True) -> dict[str, Any]:
    """Validate locally, then upload; the submission as the gallery answered (not waited for).
    NotebookError NBA200 when the local validation found errors."""
    from ..bundle import _refuse

    report = local_check(notebook, execute=execute)
    if not report.ok:
        _refuse(notebook, [f.to_dict() for f in report.findings if f.is_error])
    archive, _ = build_archive(notebook)
    return client.submit(archive, slug=slug or default_slug(report, notebook))


def default_slug(report: Any, notebook: Path) -> str | None:
    """No title in the notebook: the app is named after the file (the gallery needs a name)."""
    from ..slugs import slugify

    if report.app is not None and report.app.meta.title.strip():
        return None
    return slugify(notebook.stem) or None


def check_report(check: dict[str, Any], name: str) -> Any:
    """The gallery's check as a :class:`nbapps.validate.Report` (for ``nbapps validate``'s
    renderers)."""
    from ..findings import Finding
    from ..validate import Report

    findings = [Finding.from_dict(f) for f in check.get("findings") or []
                if isinstance(f, dict) and f.get("code")]
    runs = [{"label": r.get("label"), "parameters": r.get("parameters"), "ok": r.get("ok")}
            for r in check.get("runs") or [] if isinstance(r, dict)]
    seconds = sum(float(r.get("seconds") or 0) for r in check.get("runs") or []
                  if isinstance(r, dict))
    return Report(path=name, title=None, findings=findings, runs=runs, duration=seconds)


def _say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _progress(check: dict[str, Any]) -> None:
    state = check.get("state")
    if state == "queued":
        place = check.get("queue_position")
        _say(f"queued for the gallery's check (place {place})" if place
             else "queued for the gallery's check")
    elif state == "running":
        _say("the gallery is running its check ...")


def run(args: argparse.Namespace) -> int:
    from ..validate import render_text
    from .validate_cmd import use_color

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise UsageError(f"{notebook}: no such notebook", code="NBA105")
    settings = ClientSettings.resolve(args.gallery, args.token)  # fail early, before running
    text = args.format == "text"
    if text:
        _say(f"validating {notebook}{' (rules only)' if args.no_run else ''} ...")
    report = local_check(notebook, execute=not args.no_run)
    if not report.ok:
        if text:
            sys.stdout.write(render_text([report], color=use_color(sys.stdout)))
        else:
            sys.stdout.write(json.dumps({"local": report.to_dict()}, default=str) + "\n")
        return report.exit_code
    archive, _ = build_archive(notebook)
    with GalleryClient.from_settings(settings) as client:
        result = client.submit(archive, slug=args.slug or default_slug(report, notebook))
        if text:
            verb = "submitted" if result.get("created", True) else "already submitted (unchanged)"
            _say(f"{verb}: #{result['id']} {result.get('app', '')} v{result.get('number', '?')}"
                 f" {result['url']}")
        if args.no_wait:
            final = result
        else:
            final = client.wait_for_check(result["id"], args.wait_timeout,
                                          on_update=_progress if text else None)
    check = final.get("check") or {}
    verdict = check.get("state")
    if args.format == "json":
        sys.stdout.write(json.dumps({"id": result["id"], "url": result["url"],
                                     "state": final["state"], "check": check}) + "\n")
    else:
        if verdict in ("passed", "failed", "error"):
            sys.stdout.write(render_text([check_report(check, notebook.name)],
                                         color=use_color(sys.stdout)))
        sys.stdout.write(f"#{result['id']} {result.get('app', '')} [{final['state']}]"
                         f"{' gallery check ' + verdict if verdict else ''}\n{result['url']}\n")
    if args.no_wait or verdict == "passed" or verdict == "none":
        return 0
    return 1
