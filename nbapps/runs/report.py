"""The HTML report of a run: what the app shows, as one static page.

The same rule as the app runner (:mod:`nbapps.runner.notebook_variants`): with at least one
``widget`` cell only those cells are shown, otherwise every markdown and code cell; code inputs
and prompts are never shown. Outputs and the saved widget state go through the review preview's
sanitizer (:mod:`nbapps.server.safe_html`, :mod:`nbapps.server.widget_state`): the report
holds no script but the widget state/view JSON and, when there are widgets, one
``<script src>`` whose URL is :data:`EMBED_MARKER` until the gallery serves it (then the URL of
its static embed bundle, see :func:`with_embed_url`). Recorded values (:mod:`nbapps.record`)
are not shown.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from ..record import MIME as RECORD_MIME
from ..server.safe_html import (
    EMBED_MARKER,
    clean_review_html,
    has_widgets,
    prepare_outputs,
    renderer_installed,
    with_embed_url,
)
from ..server.widget_state import WIDGET_STATE_MIME, renderable_widgets, script_json

TEMPLATES = Path(__file__).parent / "templates"
WIDGET_TAG = "widget"
_lock = threading.Lock()
_exporter: Any = None


def _tags(cell: Any) -> tuple[str, ...]:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return tuple(str(t) for t in tags if isinstance(t, str))


def app_view(executed: nbformat.NotebookNode, *, renderer: bool = True
             ) -> tuple[nbformat.NotebookNode, str]:
    """The cells the app shows with sanitized outputs, and the widget state JSON ("" if none)."""
    nb = nbformat.from_dict(json.loads(json.dumps(executed)))
    widgets = renderable_widgets(nb.metadata, clean_review_html)
    nb.metadata.pop("widgets", None)
    has_widget_cells = any(WIDGET_TAG in _tags(c) for c in nb.cells)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "raw" or (has_widget_cells and WIDGET_TAG not in _tags(cell)):
            continue
        cell.metadata = {}
        if cell.cell_type == "code":
            outputs = [o for o in cell.get("outputs") or []
                       if RECORD_MIME not in (o.get("data") or {})]
            cell.outputs = prepare_outputs(outputs, widgets)
            if not cell.outputs:
                continue
        cells.append(cell)
    nb.cells = cells
    state = widgets.to_json() if widgets.models and renderer else ""
    if state:
        nb.metadata["widgets"] = {WIDGET_STATE_MIME: widgets.state}
    return nb, state


def _get_exporter() -> Any:
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter

        exporter = HTMLExporter(
            template_name="nbapps_report", extra_template_basedirs=[str(TEMPLATES)],
            sanitize_html=True, exclude_input=True, exclude_input_prompt=True,
            exclude_output_prompt=True, exclude_anchor_links=True, embed_images=True)
        exporter.register_filter("clean_html", clean_review_html)
        exporter.register_filter("nbapps_script_json", script_json)
        _exporter = exporter
    return _exporter


def warm_up() -> None:
    """Build the exporter and render a small notebook once: the first export in a process
    loads and compiles the templates (~0.5 s), which a spare run program does ahead."""
    v4 = nbformat.v4
    outputs = [v4.new_output("execute_result", {"text/plain": "1", "text/html": "<b>1</b>"},
                             execution_count=1),
               v4.new_output("stream", text="1")]
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# Report\n\n*ready*"),
                                v4.new_code_cell("1", outputs=outputs)])
    render_report(nb, title="warm-up", parameters={"n": 1})


def render_report(executed: nbformat.NotebookNode, *, title: str,
                  parameters: Mapping[str, Any] | None = None, when: str = "",
                  version: str = "", renderer: bool | None = None) -> str:
    """The report page of an executed notebook (a whole HTML document)."""
    renderer = renderer_installed() if renderer is None else renderer
    nb, state = app_view(executed, renderer=renderer)
    resources = {"nbapps_report": {
        "title": title or "Report",
        "parameters": [(str(k), repr(v)) for k, v in (parameters or {}).items()],
        "when": when, "version": version, "widgets_json": state,
        "embed_marker": EMBED_MARKER,
    }}
    with _lock:  # nbconvert exporters are not thread-safe
        html, _ = _get_exporter().from_notebook_node(nb, resources=resources)
    return str(html)


__all__ = ["EMBED_MARKER", "app_view", "has_widgets", "render_report", "warm_up",
           "with_embed_url"]
