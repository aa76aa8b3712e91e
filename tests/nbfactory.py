"""Build notebooks for tests with nbformat's v4 builders (no checked-in rule fixtures)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

DEFAULT_PARAMS = 'n = 3  # how many\nlabel = "x"  # a label\n'
DEFAULT_WIDGET = (
    "import ipywidgets as w\n"
    "s = w.IntSlider(value=n, min=0, max=10, description=label)\n"
    "s"
)


def make_notebook(
    *,
    params: str | None = DEFAULT_PARAMS,
    widget: str | None = DEFAULT_WIDGET,
    extra: list[Any] | None = None,
    meta: dict[str, Any] | None = None,
    kernelspec: dict[str, str] | None = KERNELSPEC,
) -> nbformat.NotebookNode:
    """A valid app notebook by default; pass ``None``/overrides to break one rule at a time.

    ``extra`` cells (strings become code cells) go between the parameters and the widget cell.
    """
    cells = [new_markdown_cell("# Test app")]
    if params is not None:
        cells.append(new_code_cell(params, metadata={"tags": ["parameters"]}))
    for c in extra or []:
        cells.append(new_code_cell(c) if isinstance(c, str) else c)
    if widget is not None:
        cells.append(new_code_cell(widget, metadata={"tags": ["widget"]}))
    nb = new_notebook(cells=cells)
    app_meta = {"title": "Test app", "description": "An app made by a test.", "tags": ["test"]}
    app_meta.update(meta or {})
    nb.metadata["nbapps"] = app_meta
    if kernelspec is not None:
        nb.metadata["kernelspec"] = dict(kernelspec)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def write_notebook(nb: nbformat.NotebookNode, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
