"""Where what reviewers, viewers and the app page see comes from: one module, one interface.

Pages and the API ask this module for a version's source notebook, the executed notebook of the
gallery's own run, the report of that run, its per-cell timings, the thumbnail and the parameter
contract, and never read bundle members themselves. DESIGN.md decision 7: everything shown is
derived by the gallery from the stored source, never taken from what a client uploaded.

Derived text is cached in ``<data_dir>/cache/<sha256>/`` (written atomically): versions are
immutable and content-addressed, so a cache entry never goes stale (bump ``RENDER_VERSION`` in
the renderer when its output changes).

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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import nbformat

from ..catalog import VersionInfo
from ..errors import NotFound
from ..files import atomic_write_text
from .views import read_bundle_member

if TYPE_CHECKING:
    from .context import ServerContext

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
    """Path of the app notebook inside the bundle, from the manifest."""
    for key in ("notebook", "entry", "entrypoint", "main"):
        value = manifest.get(key) if isinstance(manifest, dict) else None
        if isinstance(value, str) and value.endswith(".ipynb"):
            return value
        if isinstance(value, dict) and isinstance(value.get("path"), str):
            return str(value["path"])
    files = manifest.get("files") if isinstance(manifest, dict) else None
    names: list[str] = []
    if isinstance(files, dict):
        names = list(files)
    elif isinstance(files, list):
        names = [f if isinstance(f, str) else str(f.get("path", "")) for f in files]
    notebooks = [n for n in names if n.endswith(".ipynb")]
    if notebooks:
        return sorted(notebooks, key=lambda n: (n.count("/"), n))[0]
    raise NotFound("the bundle manifest names no notebook")


def executed_member(manifest: dict[str, Any]) -> str:
    """The executed notebook (the publisher's validation run) if the bundle has one."""
    value = manifest.get("executed") if isinstance(manifest, dict) else None
    return value if isinstance(value, str) and value.endswith(".ipynb") \
        else notebook_member(manifest)


def source_notebook(ctx: ServerContext, version: VersionInfo) -> nbformat.NotebookNode:
    """The stored source notebook of ``version``: exactly what its runner serves."""
    raw = read_bundle_member(ctx, version.sha256, notebook_member(version.manifest))
    return nbformat.reads(raw.decode("utf-8"), as_version=4)


def executed_notebook(ctx: ServerContext, version: VersionInfo
                      ) -> nbformat.NotebookNode | None:
    """The executed copy of ``version`` (default parameters), or None if there is none yet."""
    raw = read_bundle_member(ctx, version.sha256, executed_member(version.manifest))
    return nbformat.reads(raw.decode("utf-8"), as_version=4)


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
    """The server's static validation report of the version's notebook (no execution)."""
    def make() -> str:
        from ..validate import ValidationSettings, validate_notebook

        member = notebook_member(version.manifest)
        raw = read_bundle_member(ctx, version.sha256, member)
        report = validate_notebook(raw, ValidationSettings(execute=False),
                                   name=PurePosixPath(member).name)
        return json.dumps(report.to_dict(), default=str)

    return dict(json.loads(cached(ctx, (version.sha256, "report-static-v2.json"), make)))


def server_report(ctx: ServerContext, version: VersionInfo) -> dict[str, Any] | None:
    """The report of the gallery's check run of ``version`` (None while there is none)."""
    return static_report(ctx, version)


def check_view(ctx: ServerContext, version: VersionInfo) -> CheckView:
    """The gallery's check of ``version``: state, queue place, findings, timings."""
    report = server_report(ctx, version)
    if report is None:
        return CheckView(state="none")
    return CheckView(state="passed" if report.get("ok") else "failed",
                     findings=list(report.get("findings") or []))


__all__ = [
    "CHECK_STATES", "CellTiming", "CheckView", "RunView", "cache_path", "cached",
    "check_view", "executed_notebook", "executed_member", "load_version_notebook",
    "notebook_member", "server_report", "source_notebook", "static_report",
]
