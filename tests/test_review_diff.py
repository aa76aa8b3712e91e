"""The review diff (nbapps.server.notebook_diff): cell matching, inline changes, volatile data.

Pure functions on notebooks built with nbformat; the server test of the rendered page is in
tests/test_review_pages.py.
"""
from __future__ import annotations

import copy
import uuid

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from nbapps.server.notebook_diff import (
    NotebookDiff,
    diff_notebooks,
    line_diff,
    outputs_text,
    similar_text,
)

VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def slider_state(model_id: str, layout_id: str, value: int = 3) -> dict:
    return {
        layout_id: {"model_name": "LayoutModel", "model_module": "@jupyter-widgets/base",
                    "model_module_version": "2.0.0", "state": {"_model_name": "LayoutModel"}},
        model_id: {"model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls",
                   "model_module_version": "2.0.0",
                   "state": {"_model_name": "IntSliderModel", "value": value,
                             "layout": f"IPY_MODEL_{layout_id}"}},
    }


def source_nb() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        new_markdown_cell("# Sales board\n\nThis page shows sales by region for the quarter."),
        new_code_cell('n = 3  # how many\nlabel = "x"  # a label',
                      metadata={"tags": ["parameters"]}),
        new_code_cell("import pandas as pd\n\ndf = pd.DataFrame({'a': [1, 2, 3]})\n"
                      "total = df.a.sum()\nprint(total)"),
        new_code_cell("import ipywidgets as w\nw.IntSlider(value=n)",
                      metadata={"tags": ["widget"]}),
        new_markdown_cell("A closing note."),
    ])


def executed(nb: nbformat.NotebookNode, *, run: int) -> nbformat.NotebookNode:
    """An executed copy as a run leaves it: counts, ids, timestamps, widget ids all new."""
    out = copy.deepcopy(nb)
    model, layout = uuid.uuid4().hex, uuid.uuid4().hex
    out.metadata["papermill"] = {"start_time": f"2026-01-0{run}T10:00:00", "duration": run * 1.5}
    out.metadata["widgets"] = {STATE: {"version_major": 2, "version_minor": 0,
                                       "state": slider_state(model, layout)}}
    count = 10 * run
    for cell in out.cells:
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        cell.metadata["execution"] = {"iopub.execute_input": f"2026-01-0{run}T10:00:0{run}Z"}
        cell.metadata["papermill"] = {"duration": 0.1 * run, "status": "completed"}
        if "print(total)" in cell.source:
            # one print, split differently by the kernel in each run
            cell.outputs = ([new_output("stream", text="6\n")] if run == 1 else
                            [new_output("stream", text="6"), new_output("stream", text="\n")])
        elif "IntSlider" in cell.source:
            cell.outputs = [new_output("execute_result", execution_count=count, data={
                "text/plain": f"IntSlider(value=3) <at 0x7f{run}a3c9d0e8>",
                VIEW: {"version_major": 2, "version_minor": 0, "model_id": model}})]
    return out


def renumber_ids(nb: nbformat.NotebookNode) -> None:
    """Cells re-created (copy-pasted, another editor): ids say nothing, content must match."""
    for cell in nb.cells:
        cell.id = uuid.uuid4().hex[:8]


def test_edited_markdown_and_code_cells_are_modified_with_inline_changes():
    old = source_nb()
    new = copy.deepcopy(old)
    new.cells[0].source = ("# Sales board\n\n"
                           "This page shows revenue by region for the last quarter.")
    new.cells[2].source = new.cells[2].source.replace("[1, 2, 3]", "[1, 2, 4]")
    new.cells.insert(2, new_code_cell("import numpy as np"))  # and a new cell before it
    renumber_ids(new)
    diff = diff_notebooks(old, new)

    assert [(c.status, c.cell_type, c.old_number, c.new_number) for c in diff.sources] == [
        ("modified", "markdown", 1, 1), ("added", "code", None, 3), ("modified", "code", 3, 4)]
    md = diff.sources[0]
    old_line = next(ln for ln in md.lines if ln.kind == "del")
    new_line = next(ln for ln in md.lines if ln.kind == "add")
    assert [s.text for s in old_line.segments if s.changed] == ["sales"]
    assert [s.text for s in new_line.segments if s.changed] == ["revenue", "last "]
    assert "".join(s.text for s in new_line.segments) == \
        "This page shows revenue by region for the last quarter."
    code = diff.sources[2]
    changed = [(ln.kind, [s.text for s in ln.segments if s.changed]) for ln in code.lines
               if ln.kind in ("add", "del")]
    assert changed == [("del", ["3"]), ("add", ["4"])]
    assert [ln.kind for ln in code.lines].count("same") >= 2  # context around the change
    assert diff.outputs_missing  # no executed copies given


def test_a_markdown_cell_rewritten_in_place_stays_one_modified_cell():
    old = source_nb()
    new = copy.deepcopy(old)
    new.cells[4].source = "Questions? Ask the data team in the #sales channel."
    renumber_ids(new)
    diff = diff_notebooks(old, new)
    assert [(c.status, c.old_number, c.new_number) for c in diff.sources] == [
        ("modified", 5, 5)]
    assert not similar_text(old.cells[4].source, new.cells[4].source)  # paired by position


def test_a_rerun_that_changes_only_volatile_data_is_no_change():
    src = source_nb()
    live_source, new_source = copy.deepcopy(src), copy.deepcopy(src)
    renumber_ids(new_source)  # even the cell ids differ
    new_source.cells[1].metadata["jupyter"] = {"source_hidden": True}
    new_source.cells[1].metadata["ExecuteTime"] = {"end_time": "2026-02-01T00:00:00"}
    diff = diff_notebooks(live_source, new_source, executed(live_source, run=1),
                          executed(new_source, run=2))
    assert diff == NotebookDiff(outputs_missing=None, cells_old=5, cells_new=5)
    assert not diff.has_changes


def test_output_changes_are_separate_from_source_changes():
    src = source_nb()
    live_run, new_run = executed(src, run=1), executed(src, run=2)
    new_run.cells[2].outputs = [new_output("stream", text="7\n")]
    models = new_run.metadata["widgets"][STATE]["state"]
    slider = next(m for m in models.values() if m["model_name"] == "IntSliderModel")
    slider["state"]["value"] = 9  # widget state is not compared
    diff = diff_notebooks(src, copy.deepcopy(src), live_run, new_run)
    assert diff.sources == ()
    assert [(c.status, c.new_number) for c in diff.outputs] == [("modified", 3)]
    lines = [(ln.kind, "".join(s.text for s in ln.segments)) for ln in diff.outputs[0].lines]
    assert ("del", "6") in lines and ("add", "7") in lines
    assert NotebookDiff.from_json(diff.to_json()) == diff


def test_tags_and_type_changes_are_named():
    old = source_nb()
    new = copy.deepcopy(old)
    new.cells[2].metadata["tags"] = ["widget"]
    diff = diff_notebooks(old, new)
    assert [(c.status, c.notes) for c in diff.sources] == [
        ("modified", ("tags added: widget",))]
    assert diff.sources[0].lines == ()  # the source itself did not change


def test_outputs_text_normalizes_widgets_and_pointers():
    nb = executed(source_nb(), run=1)
    models = nb.metadata["widgets"][STATE]["state"]
    text = outputs_text(nb.cells[3], models)
    assert text.splitlines()[0] == "[widget: IntSlider]"
    assert "0x" not in text.replace("0x…", "")


def test_line_diff_context_and_skips():
    a = "\n".join(f"line {i}" for i in range(30))
    b = a.replace("line 15", "line fifteen")
    rows = line_diff(a, b)
    kinds = [r.kind for r in rows]
    assert kinds[0] == "skip" and kinds[-1] == "skip"
    assert kinds.count("del") == kinds.count("add") == 1
    assert rows[0].skipped == 12
