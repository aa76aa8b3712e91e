"""The run program: ``python -m nbapps.runs.program --source DIR --out DIR --params JSON ...``.

Run by the gallery's run worker (:mod:`.worker`) for one run, confined exactly like the check
program (:mod:`nbapps.jobs.check`), with the same process set-up (:mod:`nbapps.jobs.program`):
Landlock, kernels in one more Landlock layer with ``--kernel-sandbox``, subreaper,
``PR_SET_PDEATHSIG``, the tree killed before it exits. It executes the approved source
notebook with the parameters (papermill's injection, :func:`nbapps.execute.run_notebook`: cell
and total timeouts, no missed wake-ups, no shutdown stall) in a working folder holding the
declared data files, inside its TMPDIR (the only folder its kernels may write), and writes into
``--out`` (which the kernels cannot write).

With ``--stdin-job`` (a spare program, :class:`.worker.SpareProgram`) it prepares before its job
arrives: the kernelspecs confined, the default kernel (:data:`DEFAULT_KERNEL`) started in the
working folder through the same confined kernelspec (:func:`nbapps.execute.start_kernel`) and
the imports done. The run then uses that kernel when the notebook
names it (papermill injects the parameters as a cell, so nothing about the kernel depends on
them); otherwise it is shut down and the notebook's own kernel started as usual. The program
ends with :func:`nbapps.jobs.program.exit_now` (no interpreter teardown).

Artifacts:

=================== ===========================================================================
``executed.ipynb``  the executed notebook, widget state in ``metadata.widgets``
``result.json``     the values recorded with :func:`nbapps.record` (``{}`` when none)
``outputs/<name>``  each file named in ``metadata.nbapps.outputs`` that the run wrote into its
                    working folder (regular files, relative names, at most
                    ``--max-output-file-bytes`` each; else an NBA374 warning)
``run.json``        ``{"ok", "findings", "seconds", "cells", "outputs", "notes"}``; written
                    last, so its presence means the program completed
=================== ===========================================================================

The HTML report (and its PDF) is made by the gallery from ``executed.ipynb``
(:meth:`.worker.RunJob._report`), not here: what the gallery shows is derived by the gallery,
and nbconvert's templates would cost every program ~0.55 s of CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any

from ..jobs.check import confine_kernels, run_timings
from ..jobs.program import (
    exit_now,
    kill_descendants,
    skip_cloud_clients,
    tie_to_parent,
    write_file,
)

APP_NOTEBOOK = "app.ipynb"
#: artifact file names the program writes itself (declared outputs may not take them)
RESERVED = ("executed.ipynb", "report.html", "result.json", "run.json", "report.pdf")
#: declared outputs a notebook may list (NBA081 beyond)
MAX_OUTPUTS = 50
#: the recorded values together, as JSON
MAX_RESULT_BYTES = 1024 * 1024
#: the kernel a spare program starts before its job (used when the notebook names it)
DEFAULT_KERNEL = "python3"


def _finding(code: str, message: str, severity: str | None = None) -> dict[str, Any]:
    from ..findings import Finding

    data = Finding(code, message).to_dict()
    if severity is not None:
        data["severity"] = severity
    return data


def safe_output_name(name: Any) -> str | None:
    """A declared output name as a relative POSIX path, or None when it is not acceptable."""
    if not isinstance(name, str):
        return None
    text = name.strip().replace("\\", "/")
    rel = PurePosixPath(text)
    if not text or rel.is_absolute() or ".." in rel.parts or text.startswith("~") \
            or text in RESERVED or any(p.startswith(".") for p in rel.parts):
        return None
    return rel.as_posix()


def collect_outputs(declared: list[Any], workdir: Path, out: Path, max_bytes: int
                    ) -> tuple[list[str], list[dict[str, Any]]]:
    """Copy the declared output files from ``workdir`` to ``out/outputs``; (names kept,
    NBA374 findings for the rest)."""
    kept: list[str] = []
    findings: list[dict[str, Any]] = []
    root = workdir.resolve()
    for entry in declared:
        name = safe_output_name(entry)
        if name is None:
            findings.append(_finding("NBA374", f"declared output {entry!r} is not a relative "
                                     "file name in the working folder (or a reserved name)"))
            continue
        path = workdir / name
        try:
            inside = path.resolve().is_relative_to(root)
        except OSError:
            inside = False
        if not inside or path.is_symlink() or not path.is_file():
            findings.append(_finding("NBA374", f"declared output '{name}' was not written by "
                                     "the run (no such regular file in its working folder)"))
            continue
        size = path.stat().st_size
        if size > max_bytes:
            findings.append(_finding("NBA374", f"declared output '{name}' is {size} bytes, "
                                     f"more than the gallery keeps ({max_bytes})"))
            continue
        target = out / "outputs" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        kept.append(name)
    return kept, findings


def bounded_records(values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The recorded values if together within :data:`MAX_RESULT_BYTES`, else the ones that fit
    (in order) and an NBA379 warning per value left out."""
    kept: dict[str, Any] = {}
    findings = []
    size = 2
    for name, value in values.items():
        item = len(json.dumps({name: value})) + 1
        if size + item > MAX_RESULT_BYTES:
            findings.append(_finding("NBA379", f"recorded value {name!r} left out: the recorded "
                                     f"values exceed {MAX_RESULT_BYTES} bytes together"))
            continue
        kept[name] = value
        size += item
    return kept, findings


def run(source: Path, out: Path, workdir: Path, parameters: dict[str, Any], *,
        cell_timeout: float, total_timeout: float, max_output_file_bytes: int,
        title: str = "", version: str = "", kernel: Any = None) -> dict[str, Any]:
    """Execute ``source/app.ipynb`` with ``parameters`` in ``workdir``; artifacts into ``out``.
    ``kernel``: a :class:`nbapps.execute.StartedKernel` in ``workdir`` the run may use (it is
    shut down either way)."""
    import nbformat

    from ..errors import NbappsError
    from ..execute import app_files, copy_files, run_notebook
    from ..notebook import load_notebook
    from ..record import read_records

    started = time.perf_counter()
    notes: list[str] = []
    try:
        app = load_notebook(source / APP_NOTEBOOK, name=APP_NOTEBOOK)
    except NbappsError as exc:
        if kernel is not None:
            kernel.discard()
        summary = {"ok": False, "findings": [_finding(exc.code, exc.message)], "seconds": 0,
                   "cells": [], "outputs": [], "notes": notes}
        write_file(out / "run.json", json.dumps(summary).encode("utf-8"))
        return summary
    workdir.mkdir(parents=True, exist_ok=True)
    copy_files(source, app_files(app), workdir)
    result = run_notebook(app.nb, parameters, cwd=workdir, cell_timeout=cell_timeout,
                          total_timeout=total_timeout, kernel=kernel)
    findings = [f.to_dict() for f in result.findings]
    write_file(out / "executed.ipynb", nbformat.writes(result.nb).encode("utf-8"))
    values, dropped = bounded_records(read_records(result.nb))
    findings.extend(dropped)
    write_file(out / "result.json", json.dumps(values).encode("utf-8"))
    kept, missing = collect_outputs(list(app.meta.outputs), workdir, out, max_output_file_bytes)
    findings.extend(missing)
    summary = {"ok": result.ok and not any(f.get("severity") == "error" for f in findings),
               "findings": findings,
               "seconds": round(time.perf_counter() - started, 3),
               "cells": run_timings(result.summary(), result.nb)["cells"],
               "outputs": kept, "notes": notes}
    write_file(out / "run.json", json.dumps(summary, default=str).encode("utf-8"))
    return summary


def _prepare(workdir: Path) -> Any:
    """What a run needs anyway, done before the job arrives (a spare program): the default
    kernel started in ``workdir`` (inside the kernel sandbox when there is one: the kernelspecs
    are confined first) and the imports. Returns the
    :class:`nbapps.execute.StartedKernel` (None when it could not start: the run starts its
    own)."""
    from .. import execute

    workdir.mkdir(parents=True, exist_ok=True)
    try:
        kernel = execute.start_kernel(DEFAULT_KERNEL, workdir)
    except Exception as exc:  # noqa: BLE001 - the run starts the notebook's kernel itself
        print(f"nbapps run: no kernel started ahead: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        kernel = None
    return kernel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runs.program")
    parser.add_argument("--source", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--params", default="{}", help="the parameter values, as JSON")
    parser.add_argument("--cell-timeout", type=float, default=120.0)
    parser.add_argument("--total-timeout", type=float, default=600.0)
    parser.add_argument("--max-output-file-bytes", type=int, default=20 * 1024 * 1024)
    parser.add_argument("--title", default="")
    parser.add_argument("--version", default="")
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--kernel-sandbox", action="store_true",
                        help="start kernels in one more Landlock layer")
    parser.add_argument("--fork-kernels", action="store_true",
                        help="fork kernels from a template of this program's (a program "
                             "forked from the run zygote: ipykernel is imported already)")
    parser.add_argument("--stdin-job", action="store_true",
                        help="prepare (imports, kernelspecs), then read the job as one JSON "
                             "line on stdin: params, cell_timeout, total_timeout, title, ...")
    args = parser.parse_args(argv)
    tie_to_parent(args.parent)
    skip_cloud_clients()
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(os.environ.get("TMPDIR") or "/tmp")
    workdir = tmp / "run"
    template = None
    if args.fork_kernels:
        from .kernels import fork_template

        template = fork_template(workdir, tmp, confined=args.kernel_sandbox)
    if args.kernel_sandbox or template is not None:
        from ..runner.provisioner import TEMPLATE_FD

        confine_kernels(tmp, sandboxed=args.kernel_sandbox,
                        template_fd=TEMPLATE_FD if template is not None else None)
    kernel = None
    if args.stdin_job:
        kernel = _prepare(workdir)
        line = sys.stdin.readline()
        if not line.strip():  # the gallery stopped or dropped this spare
            kill_descendants()
            return 0
        job = json.loads(line)
        args.params = json.dumps(job.get("params") or {})
        for key in ("cell_timeout", "total_timeout", "max_output_file_bytes", "title",
                    "version"):
            if key in job:
                setattr(args, key, job[key])
    try:
        run(args.source, args.out, workdir, json.loads(args.params),
            cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
            max_output_file_bytes=args.max_output_file_bytes, title=args.title,
            version=args.version, kernel=kernel)
    finally:
        kill_descendants()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a program by the worker
    exit_now(main())
