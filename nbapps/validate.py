"""``nbapps validate``: check notebooks against the app rules, then run them.

:func:`validate_notebook` loads one notebook, applies the static rules
(:mod:`nbapps.validation.rules`), and, unless something makes running pointless (the notebook's
kernel is unknown or missing, or its parameter contract is broken), runs it with its default
parameters and then with each ``metadata.nbapps.test_parameters`` set through
:func:`nbapps.execute.run_app`. The content scan (secrets, output sizes) runs in a thread while
the kernel works, so it adds little to the wall time. Bad notebook input never raises: it becomes
a finding.

:func:`validate_paths` expands folders and validates many notebooks in a process pool, one worker
per core by default, and returns the reports sorted by path.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import nbformat

from .errors import NotebookError, UsageError
from .findings import Finding
from .notebook import AppNotebook, load_notebook
from .validation.render import exit_code, render_json, render_text, summary
from .validation.rules import (
    ParameterSet,
    content_findings,
    static_findings,
    test_parameter_findings,
)

__all__ = [
    "BLOCKING_CODES", "Report", "ValidationSettings", "exit_code", "expand_paths",
    "render_json", "render_text", "summary", "validate_notebook", "validate_paths",
]

log = logging.getLogger("nbapps.validate")

#: Error codes after which running the notebook is pointless (or would mislead).
BLOCKING_CODES = frozenset({"NBA010", "NBA011", "NBA021", "NBA022", "NBA024"})


def _is_execution_code(code: str) -> bool:
    return code.startswith("NBA07")


@dataclass
class ValidationSettings:
    execute: bool = True
    cell_timeout: float = 120
    total_timeout: float = 600
    max_output_bytes: int = 5 * 1024 * 1024
    kernel_name: str | None = None
    #: the most a cell may run whatever the notebook's own ``timeout`` says (the gallery's cap)
    max_cell_timeout: float | None = None


@dataclass
class Report:
    """What validating one notebook found. ``runs`` are the runs' summaries (default first)."""

    path: str
    title: str | None
    findings: list[Finding]
    runs: list[dict[str, Any]] = field(default_factory=list)
    executed: nbformat.NotebookNode | None = None
    duration: float = 0.0
    app: AppNotebook | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.is_error for f in self.findings)

    @property
    def error_count(self) -> int:
        return sum(1 for f in self.findings if f.is_error)

    @property
    def warning_count(self) -> int:
        return sum(1 for f in self.findings if not f.is_error)

    @property
    def exit_code(self) -> int:
        """0 clean (warnings allowed), 1 error findings, 3 a run failed (an NBA07x error)."""
        if any(f.is_error and _is_execution_code(f.code) for f in self.findings):
            return 3
        return 1 if not self.ok else 0

    def sorted_findings(self) -> list[Finding]:
        """Whole-notebook findings first, then by cell, keeping the rules' order otherwise."""
        return sorted(self.findings, key=lambda f: (f.cell is not None, f.cell or 0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; the executed notebook is left out."""
        return {
            "path": self.path,
            "title": self.title,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "errors": self.error_count,
            "warnings": self.warning_count,
            "duration": round(self.duration, 3),
            "findings": [f.to_dict() for f in self.sorted_findings()],
            "runs": self.runs,
            "parameters": self.app.contract.to_dict() if self.app is not None else None,
            "notes": list(self.notes),
        }


def _shown(source: str | Path | bytes, name: str | None) -> str:
    if name:
        return name
    return "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)


def _load(source: str | Path | bytes, shown: str) -> tuple[AppNotebook | None, list[Finding]]:
    """The notebook, or the findings saying why it cannot be used (NBA004: one per schema
    violation, at most ten, each with its cell)."""
    try:
        return load_notebook(source, name=shown), []
    except NotebookError as exc:
        violations = exc.details.get("violations") if isinstance(exc.details, dict) else None
        if exc.code == "NBA004" and violations:
            total = int(exc.details.get("total") or len(violations))
            out = [Finding("NBA004", f"violates the nbformat schema at {v['message']}",
                           cell=v.get("cell"), cell_line=v.get("cell_line"))
                   for v in violations]
            if total > len(out):
                out[-1] = replace(out[-1], message=out[-1].message
                                  + f" (and {total - len(out)} more violations)")
            return None, out
        message = exc.message
        if message.startswith(f"{shown}: "):
            message = message[len(shown) + 2:]
        return None, [Finding(exc.code, message)]
    except Exception as exc:  # noqa: BLE001 - never a traceback for bad input
        log.debug("unexpected error loading %s", shown, exc_info=True)
        return None, [Finding("NBA004", f"cannot be read as a notebook ({type(exc).__name__}: "
                                        f"{str(exc)[:120]})")]


def _run(app: AppNotebook, values: dict[str, Any], settings: ValidationSettings,
         label: str) -> tuple[list[Finding], dict[str, Any], Any]:
    """One run; returns findings, the run's summary and the result (None if it crashed)."""
    from .execute import run_app

    cell_timeout = app.meta.timeout or settings.cell_timeout
    if settings.max_cell_timeout:
        cell_timeout = min(cell_timeout, settings.max_cell_timeout)
    try:
        result = run_app(app, values, cell_timeout=cell_timeout,
                         total_timeout=settings.total_timeout, kernel_name=settings.kernel_name)
    except Exception as exc:  # noqa: BLE001 - run_app should not raise; never show a traceback
        log.debug("run %s of %s failed", label, app.name, exc_info=True)
        finding = Finding("NBA076", f"the notebook could not be run: {type(exc).__name__}: "
                                    f"{str(exc)[:200]}")
        return [finding], {"label": label, "parameters": values, "ok": False}, None
    run_summary = {"label": label, **result.summary()}
    return list(result.findings), run_summary, result


def _execute(app: AppNotebook, settings: ValidationSettings, sets: list[ParameterSet],
             report: Report) -> None:
    findings, run_summary, result = _run(app, {}, settings, "default")
    report.findings.extend(findings)
    report.runs.append(run_summary)
    if result is not None:
        report.executed = result.nb
    if any(f.is_error for f in findings):
        if sets:
            report.notes.append(f"{len(sets)} test parameter set(s) not run: the run with the "
                                "default parameters failed")
        return
    for pset in sets:
        findings, run_summary, _ = _run(app, pset.values, settings, pset.label)
        report.findings.extend(replace(f, message=f"[{pset.label}] {f.message}")
                               for f in findings)
        report.runs.append(run_summary)


def validate_notebook(
    path_or_bytes: str | Path | bytes,
    settings: ValidationSettings | None = None,
    *,
    name: str | None = None,
) -> Report:
    """Validate one notebook (a path, or a file's bytes shown as ``name``). Never raises for bad
    notebook input."""
    settings = settings or ValidationSettings()
    start = time.perf_counter()
    shown = _shown(path_or_bytes, name)
    app, failures = _load(path_or_bytes, shown)
    if app is None:
        return Report(path=shown, title=None, findings=[replace(f, path=shown) for f in failures],
                      duration=time.perf_counter() - start)
    report = Report(path=shown, title=app.meta.title or None, findings=list(app.findings),
                    app=app)
    report.findings += static_findings(app, kernel_override=settings.kernel_name)
    test_findings, sets = test_parameter_findings(app)
    report.findings += test_findings
    blocking = sorted({f.code for f in report.findings if f.is_error and f.code in BLOCKING_CODES})
    if settings.kernel_name and "NBA010" in blocking:
        blocking.remove("NBA010")  # the requested kernel runs it
    if settings.execute and not blocking:
        # run_app never modifies app.nb, so the scan can read it while the kernel works
        with ThreadPoolExecutor(1, thread_name_prefix="nbapps-scan") as pool:
            scan: Future[list[Finding]] = pool.submit(content_findings, app,
                                                      settings.max_output_bytes)
            _execute(app, settings, sets, report)
            report.findings += scan.result()
    else:
        report.findings += content_findings(app, settings.max_output_bytes)
        if settings.execute:
            report.notes.append("not run because of " + ", ".join(blocking))
    report.findings = [replace(f, path=shown) for f in report.findings]
    report.duration = time.perf_counter() - start
    return report


# -- many notebooks -------------------------------------------------------------------------------


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; folders become their ``*.ipynb`` files, skipping hidden folders and
    ``.ipynb_checkpoints``. Sorted, without duplicates. Raises UsageError NBA105."""
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            notebooks = [p for p in path.rglob("*.ipynb") if p.is_file() and not any(
                part.startswith(".") for part in p.relative_to(path).parts)]
            if not notebooks:
                raise UsageError(f"no notebooks (*.ipynb) in folder {raw}", code="NBA105")
            for nb_path in notebooks:
                found.setdefault(os.path.realpath(nb_path), nb_path)
        elif path.exists():
            found.setdefault(os.path.realpath(path), path)
        else:
            raise UsageError(f"path not found: {raw}", code="NBA105")
    return sorted(found.values(), key=lambda p: str(p))


def _worker(path: Path, settings: ValidationSettings) -> Report:
    return validate_notebook(path, settings)


#: Imported once by the fork server (when one is used), so each worker starts with them loaded.
PRELOAD = ["nbapps.validate", "nbapps.validation.rules", "nbapps.execute",
           "detect_secrets.core.scan", "detect_secrets.settings",
           "detect_secrets.core.plugins.util", "IPython.core.inputtransformer2",
           "jupyter_client.kernelspec"]


def _pool(workers: int) -> ProcessPoolExecutor:
    """A process pool whose start is cheap and safe.

    ``fork`` (no re-import, workers start at once) only while this process has a single thread:
    a forked copy of a threaded process can deadlock on a lock another thread held. Otherwise a
    fork server (which preloads :data:`PRELOAD`), or ``spawn`` where there is none. With fork
    the executor starts every worker on the first submit, before its own manager thread.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver" if "forkserver" in methods else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    log.debug("validating with %d %s workers", workers, method)
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def validate_paths(
    paths: Sequence[str | Path],
    settings: ValidationSettings | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[Report]:
    """Validate every notebook under ``paths`` (one worker process per core by default).

    Reports come back sorted by path whatever the completion order. With ``progress`` (and more
    than one notebook), a rich progress bar is drawn on stderr. Raises UsageError (NBA105) for
    a path that does not exist.
    As with any process pool, a script calling this needs the ``if __name__ == "__main__":``
    guard when the pool cannot fork.
    """
    settings = settings or ValidationSettings()
    files = expand_paths(paths)
    workers = max(1, min(workers or os.cpu_count() or 1, len(files)))
    reports: list[Report | None] = [None] * len(files)
    progress = progress and len(files) > 1
    bar: _Bar | None = None
    try:
        if workers == 1:
            bar = _Bar(len(files)) if progress else None
            for index, path in enumerate(files):
                reports[index] = validate_notebook(path, settings)
                if bar is not None:
                    bar.advance(path)
        else:
            pool = _pool(workers)
            try:
                futures = {pool.submit(_worker, p, settings): i for i, p in enumerate(files)}
                bar = _Bar(len(files)) if progress else None  # its thread starts after the forks
                for future in as_completed(futures):
                    index = futures[future]
                    reports[index] = future.result()
                    if bar is not None:
                        bar.advance(files[index])
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        if bar is not None:
            bar.stop()
    return [r for r in reports if r is not None]


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress("[progress.description]{task.description}", BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=Console(file=sys.stderr), transient=True)
        self._task = self._progress.add_task("validating", total=total)
        self._progress.start()

    def advance(self, path: Path) -> None:
        self._progress.update(self._task, advance=1, description=f"validated {path.name}")

    def stop(self) -> None:
        self._progress.stop()
