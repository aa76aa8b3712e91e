"""The review preview: every cell of the stored source, the gallery run's outputs and widgets.

What the reviewer reads in the sandboxed frame of a submission page is built here from
:mod:`.review_data` (never from bundle members directly):

* **sources** come from the stored source notebook, every cell in order, whatever its tags or
  hiding metadata (``jupyter.source_hidden``, ``transient.remove_source`` are dropped), each
  marked *shown in the app* or *runs hidden* by the same rule the runner applies (with at least
  one ``widget`` cell, only those are shown), with the cell's time in the gallery's run;
* **outputs** come from the gallery's executed copy, matched cell by cell; a cell whose executed
  source differs from the stored one gets no outputs (and a note), so outputs never stand beside
  code that did not produce them;
* **widgets** are the state the run saved, rendered by the ipywidgets HTML manager bundle
  (``static/widgets/embed.js``, see ``scripts/widget_embed.py``) after
  :mod:`.widget_state` kept the built-in, sanitized models; views of custom libraries show a
  placeholder.

HTML is nbconvert's ``HTMLExporter`` with the bleach allowlist below and the ``nbapps_review``
template (no script but the widget state/view JSON and, when there are widgets, one
``<script src>`` of our static bundle). The frame is served with :func:`frame_csp`: sandboxed
without ``allow-same-origin``, scripts only from our static widget folder. Rendered pages are
cached per (source hash, check state, renderer) in ``<data_dir>/cache/<sha256>/``.
"""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from ..catalog import VersionInfo
from ..findings import first_line
from .review_data import CheckView, cached, check_view, executed_notebook, source_notebook
from .safe_html import EMBED_MARKER, clean_review_html, prepare_outputs, renderer_installed
from .widget_state import WIDGET_STATE_MIME, WidgetSet, renderable_widgets

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server.review")

NBCONVERT_TEMPLATES = Path(__file__).parent / "nbconvert_templates"
#: part of every cached file name: bump it when the rendering, diff or report changes
RENDER_VERSION = "3"
WIDGET_TAG = "widget"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
_exporter_lock = threading.Lock()
_exporter: Any = None


# -- the annotated review copy --------------------------------------------------------------------

@dataclass(frozen=True)
class CellNote:
    """What the preview says about one cell beside its source."""

    number: int  # 1-based, as JupyterLab counts
    cell_type: str
    shown: bool
    tags: tuple[str, ...]
    seconds: float | None = None
    note: str | None = None

    @property
    def role(self) -> str:
        if self.shown:
            return "output shown in the app" if self.cell_type == "code" else "shown in the app"
        return "runs hidden" if self.cell_type == "code" else "not shown"


@dataclass(frozen=True)
class RunLine:
    label: str
    ok: bool
    seconds: float | None
    parameters: str


@dataclass(frozen=True)
class PreviewSummary:
    cells: int
    shown: int
    hidden_code: int
    widget_cells: bool
    outputs: str  # where the outputs come from, or why there are none
    runs: tuple[RunLine, ...] = ()
    notes: tuple[str, ...] = ()


def _tags(cell: Any) -> tuple[str, ...]:
    tags = cell.get("metadata", {}).get("tags", [])
    return tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()


def _source(cell: Any) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def cell_timings(check: CheckView | None, source: nbformat.NotebookNode) -> dict[int, float]:
    """0-based cell index -> seconds in the check's default run (cells found by number and
    checked by first line; a timing whose cell cannot be found is left out)."""
    if check is None or not check.runs:
        return {}
    by_line: dict[str, list[int]] = {}
    for index, cell in enumerate(source.cells):
        if cell.cell_type == "code":
            by_line.setdefault(first_line(_source(cell)), []).append(index)
    out: dict[int, float] = {}
    for timing in check.runs[0].cells:
        index = timing.cell - 1
        if 0 <= index < len(source.cells) and \
                first_line(_source(source.cells[index])) == timing.first_line:
            out[index] = float(timing.seconds)
            continue
        candidates = by_line.get(timing.first_line) or []
        if len(candidates) == 1:
            out[candidates[0]] = float(timing.seconds)
    return out


def _aligned_outputs(source: nbformat.NotebookNode, executed: nbformat.NotebookNode | None
                     ) -> tuple[dict[int, Any], list[str]]:
    """0-based source index -> executed cell with the same source (outputs to show)."""
    if executed is None:
        return {}, []
    run_cells = [c for c in executed.cells if INJECTED_TAG not in _tags(c)]
    notes: list[str] = []
    pairs: dict[int, Any] = {}
    if len(run_cells) == len(source.cells):
        candidates = list(enumerate(run_cells))
    else:
        ids = {c.get("id"): c for c in run_cells if c.get("id")}
        candidates = [(i, ids[c.get("id")]) for i, c in enumerate(source.cells)
                      if c.get("id") in ids]
        notes.append("The executed copy does not have the same cells as the stored source: "
                     "outputs are shown only for the cells found in both.")
    mismatched = 0
    for index, run in candidates:
        if run.get("cell_type") != source.cells[index].cell_type or \
                _source(run) != _source(source.cells[index]):
            mismatched += 1
            continue
        pairs[index] = run
    if mismatched:
        notes.append(f"{mismatched} cell(s) of the executed copy differ from the stored source: "
                     "their outputs are not shown.")
    return pairs, notes


def review_copy(source: nbformat.NotebookNode, executed: nbformat.NotebookNode | None,
                check: CheckView | None = None
                ) -> tuple[nbformat.NotebookNode, WidgetSet, PreviewSummary]:
    """The notebook the preview renders: stored sources, matched outputs, annotations."""
    nb = nbformat.from_dict(json.loads(json.dumps(source)))
    nb.metadata.pop("widgets", None)
    has_widget_cells = any(WIDGET_TAG in _tags(c) for c in nb.cells)
    timings = cell_timings(check, source)
    runs, run_notes = _aligned_outputs(source, executed)
    widgets = renderable_widgets(executed.metadata if executed is not None else {},
                                 clean_review_html)
    shown = hidden_code = 0
    for index, cell in enumerate(nb.cells):
        meta = cell.setdefault("metadata", {})
        for key in ("jupyter", "transient", "collapsed", "scrolled", "nbapps_review"):
            meta.pop(key, None)
        tags = _tags(cell)
        is_shown = (WIDGET_TAG in tags) if has_widget_cells else cell.cell_type != "raw"
        note = None
        if cell.cell_type == "code":
            run = runs.get(index)
            cell.outputs = prepare_outputs(run.get("outputs", []), widgets) if run else []
            cell.execution_count = run.get("execution_count") if run else None
            if executed is not None and run is None:
                note = "no outputs shown: this cell is not in the executed copy as stored"
            hidden_code += 0 if is_shown else 1
        shown += 1 if is_shown else 0
        annotation = CellNote(number=index + 1, cell_type=cell.cell_type, shown=is_shown,
                              tags=tags, seconds=timings.get(index), note=note)
        meta["nbapps_review"] = {**asdict(annotation), "role": annotation.role}
    if widgets.models:
        nb.metadata["widgets"] = {WIDGET_STATE_MIME: widgets.state}
    summary = PreviewSummary(
        cells=len(nb.cells), shown=shown, hidden_code=hidden_code,
        widget_cells=has_widget_cells, outputs=_outputs_source(executed, check),
        runs=tuple(_run_lines(check)), notes=tuple(run_notes))
    return nb, widgets, summary


def _outputs_source(executed: nbformat.NotebookNode | None, check: CheckView | None) -> str:
    if executed is not None:
        return "Outputs and widgets: the gallery's run with the default parameters."
    state = check.state if check is not None else "none"
    if state in ("queued", "running"):
        return "No outputs yet: the gallery's run is " + state + "."
    return "No outputs: there is no executed copy of this version."


def _run_lines(check: CheckView | None) -> list[RunLine]:
    if check is None:
        return []
    out = []
    for run in check.runs:
        params = ", ".join(f"{k}={v!r}" for k, v in (run.parameters or {}).items())
        out.append(RunLine(run.label, run.ok, run.seconds, params or "defaults"))
    return out


# -- HTML -----------------------------------------------------------------------------------------

def _get_exporter() -> Any:
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter

        from .widget_state import script_json

        exporter = HTMLExporter(
            template_name="nbapps_review",
            extra_template_basedirs=[str(NBCONVERT_TEMPLATES)],
            sanitize_html=True,
            exclude_anchor_links=True,
            embed_images=True,
        )
        exporter.register_filter("clean_html", clean_review_html)
        exporter.register_filter("nbapps_script_json", script_json)
        _exporter = exporter
    return _exporter


def render_preview(source: nbformat.NotebookNode, executed: nbformat.NotebookNode | None,
                   check: CheckView | None = None, *, renderer: bool | None = None) -> str:
    """The preview page (a whole HTML document); :data:`EMBED_MARKER` marks our script."""
    nb, widgets, summary = review_copy(source, executed, check)
    renderer = renderer_installed() if renderer is None else renderer
    if not renderer:  # views fall back to their text: no script element at all
        nb.metadata.pop("widgets", None)
    resources = {"nbapps_review": {
        "summary": asdict(summary),
        "widgets_json": widgets.to_json() if widgets.models and renderer else "",
        "embed_marker": EMBED_MARKER,
        "renderer_missing": bool(widgets.models) and not renderer,
    }}
    with _exporter_lock:  # nbconvert exporters are not thread-safe
        html, _ = _get_exporter().from_notebook_node(nb, resources=resources)
    return str(html)


def render_notebook_html(nb: nbformat.NotebookNode) -> str:
    """A notebook on its own (source and outputs alike), for callers without a version."""
    return render_preview(nb, nb)


def notebook_html(ctx: ServerContext, version: VersionInfo) -> str:
    """The preview of ``version``, cached once its check is over (or was never started)."""
    check = check_view(ctx, version)
    executed = executed_notebook(ctx, version)

    def make() -> str:
        return render_preview(source_notebook(ctx, version), executed, check)

    renderer = "w" if renderer_installed() else "t"
    if check.state in ("queued", "running"):
        if executed is not None or check.runs:
            return make()
        # the page reloads every few seconds while the check runs: sources only, cached
        return cached(ctx, (version.sha256, f"preview-{check.state}-{renderer}"
                                            f"-v{RENDER_VERSION}.html"), make)
    if check.state == "passed" and executed is None:
        return make()  # its outputs are being stored: never cached
    stamp = int(check.finished_at.timestamp()) if check.finished_at else 0
    return cached(ctx, (version.sha256,
                        f"preview-{check.state}-{stamp}-{renderer}-v{RENDER_VERSION}.html"), make)


__all__ = [
    "RENDER_VERSION", "CellNote", "PreviewSummary", "cell_timings", "notebook_html",
    "render_notebook_html", "render_preview", "review_copy",
]
