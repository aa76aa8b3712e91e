"""The check program: ``python -m nbapps.jobs.check --source DIR --out DIR ...``.

Run by the gallery's worker (:mod:`.worker`) for one check job, confined like an app runner
(Landlock: read its own copy of the source, write its own work folder; its own HOME and TMPDIR;
the allowlisted environment of :mod:`nbapps.runner.env`). It validates the source notebook the
way ``nbapps validate`` does, running it with its default and test parameters
(:func:`nbapps.validate.validate_notebook`), and writes into ``--out``:

=================== ===========================================================================
``executed.ipynb``  the run with the default parameters, widget state in ``metadata.widgets``
``thumbnail.png``   :mod:`nbapps.thumbnail` from the declared thumbnail or the run's images
``contract.json``   the parameter contract
``report.json``     ``Report.to_dict()``; each run also gets ``seconds`` and ``cells``
                    (``[{"cell": 1-based number, "first_line", "seconds"}]``); written last, so
                    its presence means the check completed
=================== ===========================================================================

The process makes itself a child subreaper (so processes the notebook leaves behind stay in its
tree, where the worker's hard kill finds them) and dies with the gallery (``PR_SET_PDEATHSIG``),
and kills what is left of its tree before it exits.

With ``--kernel-sandbox`` (the worker passes it when the check itself is confined) every kernel
starts inside one more Landlock layer (:func:`confine_kernels`): it may write only its temp
folder, not the check's output folder, and (Landlock ABI 6+) cannot signal the check program.
So the notebook under check cannot forge its own report, executed notebook or thumbnail.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .program import exit_now, kill_descendants, skip_cloud_clients, tie_to_parent, write_file

APP_NOTEBOOK = "app.ipynb"


def confine_kernels(tmp: Path, *, sandboxed: bool = True,
                    template_fd: int | None = None) -> list[str]:
    """Install a copy of every kernelspec on the first ``JUPYTER_PATH`` folder, each starting
    its kernel through :func:`nbapps.sandbox.command` with ``tmp`` as the only writable folder
    (home, Jupyter runtime files and the run folder all live there). Returns the names.

    With ``template_fd`` (a run program forked from the run zygote, :mod:`nbapps.runs.kernels`)
    the ipykernels of this Python are forked from the program's kernel template instead
    (jupyter_client's per-kernelspec provisioner, ``nbapps-fork``: the template puts the same
    Landlock layer on each; ``spawn_prefix`` confines one spawned as the fallback). Without
    ``sandboxed`` the specs get no layer (only that routing, if any)."""
    from jupyter_client.kernelspec import KernelSpecManager

    from .. import sandbox

    first = (os.environ.get("JUPYTER_PATH") or "").split(os.pathsep)[0]
    if not first or (not sandboxed and template_fd is None):
        return []
    root = Path(first) / "kernels"
    home = tmp / "kernel-home"
    home.mkdir(parents=True, exist_ok=True)
    names = []
    for name, info in sorted(KernelSpecManager().get_all_specs().items()):
        spec = dict(info.get("spec") or {})
        argv = list(spec.get("argv") or [])
        if not argv:
            continue
        if argv[0] in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
            argv[0] = sys.executable
        confined = sandbox.command(argv, read=[], write=[tmp]) if sandboxed else argv
        if template_fd is not None and argv[0] == sys.executable \
                and argv[1:3] == ["-m", "ipykernel_launcher"]:
            spec["argv"] = argv
            spec["metadata"] = {**dict(spec.get("metadata") or {}), "kernel_provisioner": {
                "provisioner_name": "nbapps-fork",
                "config": {"template_fd": template_fd,
                           "spawn_prefix": confined[:len(confined) - len(argv)]}}}
        else:
            spec["argv"] = confined
        spec["env"] = {**dict(spec.get("env") or {}), "HOME": str(home),
                       "IPYTHONDIR": str(home / ".ipython"),
                       "MPLCONFIGDIR": str(home / ".config" / "matplotlib")}
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
        names.append(name)
    return names


def run_timings(run: dict[str, Any], nb: Any) -> dict[str, Any]:
    """A run summary with ``seconds`` and per-cell ``cells`` (1-based numbers, first lines)."""
    from ..findings import first_line

    cells = []
    for key, seconds in sorted((run.get("cell_seconds") or {}).items(), key=lambda kv: int(kv[0])):
        index = int(key)
        source = nb.cells[index].source if nb is not None and index < len(nb.cells) else ""
        cells.append({"cell": index + 1, "first_line": first_line(source, 80),
                      "seconds": round(float(seconds), 3)})
    out = dict(run)
    out["seconds"] = run.get("total_seconds")
    out["cells"] = cells
    return out


def check(source: Path, out: Path, *, cell_timeout: float, total_timeout: float,
          max_output_bytes: int) -> dict[str, Any]:
    """Validate ``source/app.ipynb`` with execution and write the artifacts into ``out``."""
    import nbformat

    from ..thumbnail import make_thumbnail
    from ..validate import ValidationSettings, validate_notebook

    settings = ValidationSettings(execute=True, cell_timeout=cell_timeout,
                                  total_timeout=total_timeout, max_output_bytes=max_output_bytes,
                                  max_cell_timeout=cell_timeout)
    report = validate_notebook(source / APP_NOTEBOOK, settings, name=APP_NOTEBOOK)
    app = report.app
    data = report.to_dict()
    data["runs"] = [run_timings(r, app.nb if app is not None else None) for r in report.runs]
    if report.executed is not None:
        write_file(out / "executed.ipynb", nbformat.writes(report.executed).encode("utf-8"))
    if app is not None:
        write_file(out / "contract.json", json.dumps(app.contract.to_dict()).encode("utf-8"))
        thumb = app.meta.thumbnail.strip().replace("\\", "/") if app.meta.thumbnail else None
        thumb_path = (source / thumb) if thumb else None
        if thumb_path is not None and (thumb_path.is_symlink() or not thumb_path.is_file()):
            thumb_path = None
        shown = report.executed if report.executed is not None else nbformat.v4.new_notebook()
        write_file(out / "thumbnail.png",
               make_thumbnail(shown, app.meta.title or "App", source=thumb_path))
    write_file(out / "report.json", json.dumps(data, default=str).encode("utf-8"))
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.jobs.check")
    parser.add_argument("--source", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--cell-timeout", type=float, default=120.0)
    parser.add_argument("--total-timeout", type=float, default=600.0)
    parser.add_argument("--max-output-bytes", type=int, default=5 * 1024 * 1024)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--kernel-sandbox", action="store_true",
                        help="start kernels in one more Landlock layer (see the docstring)")
    args = parser.parse_args(argv)
    tie_to_parent(args.parent)
    skip_cloud_clients()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kernel_sandbox:
        confine_kernels(Path(os.environ.get("TMPDIR") or "/tmp"))
    try:
        check(args.source, args.out, cell_timeout=args.cell_timeout,
              total_timeout=args.total_timeout, max_output_bytes=args.max_output_bytes)
    finally:
        kill_descendants()
    return 0


if __name__ == "__main__":  # pragma: no cover - run as a program by the worker
    exit_now(main())
