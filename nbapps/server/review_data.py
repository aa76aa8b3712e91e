"""Where what reviewers, viewers and the app page see comes from: one module, one interface.

Pages and the API ask this module for a version's source notebook, the executed notebook of the
gallery's own run, the report of that run, its per-cell timings, the thumbnail and the parameter
contract, and never read bundle members themselves. DESIGN.md decision 7: everything shown is
derived by the gallery from the stored source, never taken from what a client uploaded.

Where it comes from: the version's check job (:mod:`nbapps.catalog.jobs`) and the artifacts that
check stored as content-addressed blobs (:mod:`nbapps.jobs.artifacts`); the source is read from
the stored source object (:func:`nbapps.jobs.source.source_ref`), for versions stored by an
earlier nbapps from the source files of their client archive only. A version the gallery never
checked has the check state "none" and no executed notebook.

Derived text is cached in ``<data_dir>/cache/<sha256>/`` (written atomically): versions are
immutable and content-addressed, so a cache entry never goes stale (bump ``RENDER_VERSION`` in
the renderer when its output changes; key by the check too where its outcome matters).

Interface (stable; the implementation behind it may change):

* :func:`check_view` the state of the gallery's check run of a version (queued with a place,
  running, passed, failed, error), its coded findings and per-run, per-cell timings.
* :func:`source_notebook` the stored source: exactly what runs.
* :func:`executed_notebook` the gallery's executed copy (default parameters), widget state in
  ``metadata.widgets``; None while no check run has produced one.
* :func:`server_report` the full report dict of the check run (``Report.to_dict()`` shape).
* :func:`cached` text cache helper for renderers.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from ..catalog import JobInfo, VersionInfo
from ..errors import NbappsError
from ..files import atomic_write_text
from ..jobs import artifacts
from ..jobs.source import source_ref
from .views import read_bundle_member

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server")

#: check states (the gallery's own validation run of a submitted source)
CHECK_STATES = ("none", "queued", "running", "passed", "failed", "error")


@dataclass(frozen=True)
class CellTiming:
    """One code cell of a run: 1-based number as JupyterLab shows it, first line, seconds."""

    cell: int
    first_line: str
    seconds: float


@dataclass(frozen=True)
class RunView:
    """One run of the check (the default parameters first, then each test parameter set)."""

    label: str
    parameters: dict[str, Any]
    ok: bool
    seconds: float | None
    cells: list[CellTiming] = field(default_factory=list)


@dataclass(frozen=True)
class CheckView:
    """What the gallery's own check of a version found (see the module docstring)."""

    #: one of :data:`CHECK_STATES`; "none" for versions never checked by the gallery
    state: str
    #: 1-based place in the check queue while ``queued``
    queue_position: int | None = None
    #: coded findings (``Finding.to_dict()``: code, severity, message, cell 1-based, ...)
    findings: list[dict[str, Any]] = field(default_factory=list)
    runs: list[RunView] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def done(self) -> bool:
        return self.state in ("passed", "failed", "error")

    @property
    def errors(self) -> int:
        return sum(1 for f in self.findings if f.get("severity") == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.get("severity") == "warning")


# -- cache ----------------------------------------------------------------------------------------

def cache_path(ctx: ServerContext, *parts: str) -> Path:
    return ctx.data_dir.joinpath("cache", *parts)


def cached(ctx: ServerContext, parts: tuple[str, ...], make: Any) -> str:
    """``make()``'s text, computed once per key (``parts`` under ``<data_dir>/cache``)."""
    path = cache_path(ctx, *parts)
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        pass
    text = make()
    atomic_write_text(path, text)
    return str(text)


# -- notebooks ------------------------------------------------------------------------------------

def notebook_member(manifest: dict[str, Any]) -> str:
    """Path of the app notebook in a version's source: always ``app.ipynb`` at the root (the
    only notebook the gallery trusts; kept as a function for older callers)."""
    del manifest
    return "app.ipynb"


def source_notebook(ctx: ServerContext, version: VersionInfo) -> nbformat.NotebookNode:
    """The stored source notebook of ``version``: exactly what its runner serves."""
    sha, key = source_ref(version)
    raw = read_bundle_member(ctx, sha, "app.ipynb", key=key)
    return nbformat.reads(raw.decode("utf-8"), as_version=4)


def check_job(ctx: ServerContext, version: VersionInfo) -> JobInfo | None:
    """The newest check job of ``version`` that was not cancelled (None: never checked)."""
    job = ctx.catalog.latest_job(version.id)
    if job is not None and job.state == "cancelled":
        older = [j for j in ctx.catalog.list_jobs(kind=job.kind, version_id=version.id,
                                                   limit=20) if j.state != "cancelled"]
        return older[0] if older else None
    return job


def _artifact(ctx: ServerContext, version: VersionInfo, name: str) -> str | None:
    """The blob address of artifact ``name`` of the newest finished check of ``version``."""
    job = check_job(ctx, version)
    if job is None or job.state not in ("passed", "failed", "error"):
        job = _last_finished(ctx, version)
    if job is None:
        return None
    value = job.artifacts.get(name)
    return value if isinstance(value, str) else None


def _last_finished(ctx: ServerContext, version: VersionInfo) -> JobInfo | None:
    for job in ctx.catalog.list_jobs(kind="check", version_id=version.id, limit=20):
        if job.state in ("passed", "failed", "error"):
            return job
    return None


def executed_notebook(ctx: ServerContext, version: VersionInfo
                      ) -> nbformat.NotebookNode | None:
    """The executed copy of ``version`` made by the gallery's check (default parameters, widget
    state in ``metadata.widgets``), or None while no check has produced one."""
    blob = _artifact(ctx, version, artifacts.EXECUTED)
    if blob is None:
        return None
    try:
        return artifacts.load_notebook(ctx.store, blob)
    except (NbappsError, ValueError) as exc:
        log.warning("executed notebook of version %s unreadable: %s", version.id, exc)
        return None


def load_version_notebook(ctx: ServerContext, version: VersionInfo, *, executed: bool = True
                          ) -> nbformat.NotebookNode:
    """The executed notebook when there is one (else the source), or the source."""
    if executed:
        nb = executed_notebook(ctx, version)
        if nb is not None:
            return nb
    return source_notebook(ctx, version)


# -- reports --------------------------------------------------------------------------------------

def static_report(ctx: ServerContext, version: VersionInfo) -> dict[str, Any]:
    """The server's static validation report of the version's source notebook (no execution)."""
    sha, key = source_ref(version)

    def make() -> str:
        from ..validate import ValidationSettings, validate_notebook

        raw = read_bundle_member(ctx, sha, "app.ipynb", key=key)
        report = validate_notebook(raw, ValidationSettings(execute=False), name="app.ipynb")
        return json.dumps(report.to_dict(), default=str)

    return dict(json.loads(cached(ctx, (sha, "report-static-v3.json"), make)))


def server_report(ctx: ServerContext, version: VersionInfo) -> dict[str, Any] | None:
    """The report of the gallery's check run of ``version`` (``Report.to_dict()`` shape, runs
    with ``cells`` timings), or None while there is none."""
    blob = _artifact(ctx, version, artifacts.REPORT)
    if blob is None:
        job = _last_finished(ctx, version)
        if job is not None and job.result.get("findings"):  # ended before any report
            return {"ok": False, "findings": list(job.result["findings"]), "runs": [],
                    "notes": list(job.result.get("notes") or []),
                    "errors": sum(1 for f in job.result["findings"]
                                  if f.get("severity") == "error"), "warnings": 0}
        return None
    try:
        report = artifacts.load_json(ctx.store, blob)
    except (NbappsError, ValueError) as exc:
        log.warning("check report of version %s unreadable: %s", version.id, exc)
        return None
    return report if isinstance(report, dict) else None


def _runs(raw: Any) -> list[RunView]:
    out: list[RunView] = []
    for run in raw if isinstance(raw, list) else []:
        if not isinstance(run, dict):
            continue
        cells = [CellTiming(cell=int(c.get("cell") or 0), first_line=str(c.get("first_line") or ""),
                            seconds=float(c.get("seconds") or 0.0))
                 for c in run.get("cells") or [] if isinstance(c, dict)]
        seconds = run.get("seconds", run.get("total_seconds"))
        out.append(RunView(label=str(run.get("label") or ""),
                           parameters=dict(run.get("parameters") or {}),
                           ok=bool(run.get("ok")),
                           seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
                           cells=cells))
    return out


def view_of(job: JobInfo | None) -> CheckView:
    """The :class:`CheckView` of a check job (findings and runs from its recorded result)."""
    if job is None or job.state == "cancelled":
        return CheckView(state="none")
    state = job.state if job.state in CHECK_STATES else "error"
    result = job.result or {}
    findings = [f for f in result.get("findings") or [] if isinstance(f, dict)]
    return CheckView(state=state, queue_position=job.queue_position if state == "queued" else None,
                     findings=findings, runs=_runs(result.get("runs")),
                     started_at=job.started_at if state != "queued" else None,
                     finished_at=job.finished_at if state in ("passed", "failed", "error")
                     else None)


def check_view(ctx: ServerContext, version: VersionInfo) -> CheckView:
    """The gallery's check of ``version``: state, queue place, findings, timings."""
    return view_of(check_job(ctx, version))


def check_dict(view: CheckView) -> dict[str, Any]:
    """The API's ``check`` object (see ``GET /api/submissions/<id>``)."""
    iso = (lambda t: t.isoformat() if t is not None else None)  # noqa: E731
    return {
        "state": view.state, "queue_position": view.queue_position,
        "findings": list(view.findings),
        "runs": [{"label": r.label, "parameters": r.parameters, "ok": r.ok, "seconds": r.seconds,
                  "cells": [{"cell": c.cell, "first_line": c.first_line, "seconds": c.seconds}
                            for c in r.cells]} for r in view.runs],
        "started_at": iso(view.started_at), "finished_at": iso(view.finished_at),
    }


__all__ = [
    "CHECK_STATES", "CellTiming", "CheckView", "RunView", "cache_path", "cached", "check_dict",
    "check_job", "check_view", "executed_notebook", "load_version_notebook", "notebook_member",
    "server_report", "source_notebook", "static_report", "view_of",
]
