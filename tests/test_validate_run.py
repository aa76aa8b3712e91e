"""Validation that runs notebooks on a real kernel: default parameters, then each test set."""
from __future__ import annotations

import time
from pathlib import Path

import nbformat
import pytest

from nbapps.validate import ValidationSettings, render_text, validate_notebook
from tests.nbfactory import make_notebook, write_notebook

pytestmark = pytest.mark.kernel

# no ipywidgets import: keeps each run short
WIDGET = "label * n"


def validate(tmp_path: Path, settings: ValidationSettings | None = None, **kw):
    kw.setdefault("widget", WIDGET)
    path = write_notebook(make_notebook(**kw), tmp_path / "app" / "app.ipynb")
    return validate_notebook(path, settings or ValidationSettings(cell_timeout=60,
                                                                  total_timeout=120))


def test_clean_notebook_runs_default_and_test_parameters(tmp_path: Path):
    report = validate(tmp_path, meta={"test_parameters": [{"n": 5, "label": "y"}]})
    assert report.findings == [] and report.exit_code == 0
    assert [r["label"] for r in report.runs] == ["default", 'test_parameters[0] {"label": "y", '
                                                            '"n": 5}']
    assert [r["ok"] for r in report.runs] == [True, True]
    assert report.runs[1]["parameters"] == {"n": 5, "label": "y"}
    executed = report.executed
    assert isinstance(executed, nbformat.NotebookNode)
    widget_outputs = executed.cells[-1].outputs
    assert widget_outputs[0]["data"]["text/plain"] == "'xxx'"  # the default run is kept
    assert "runs" in report.to_dict() and "executed" not in report.to_dict()


def test_failing_test_set_is_prefixed_and_exit_code_is_3(tmp_path: Path):
    report = validate(tmp_path, extra=["assert n < 5, 'n too big'"],
                      meta={"test_parameters": [{"n": 4}, {"n": 7}]})
    assert [f.code for f in report.findings] == ["NBA070"]
    finding = report.findings[0]
    assert finding.message.startswith('[test_parameters[1] {"n": 7}] ')
    assert "n too big" in finding.message and finding.cell == 2
    assert report.exit_code == 3 and [r["ok"] for r in report.runs] == [True, True, False]
    text = render_text([report], color=False)
    assert ":cell 3 [assert n < 5, 'n too big']  NBA070 error: [test_parameters[1]" in text


def test_default_failure_skips_test_sets_and_static_findings_still_come(tmp_path: Path):
    report = validate(tmp_path, extra=["1 / 0", "!echo hi"],
                      meta={"test_parameters": [{"n": 1}], "title": ""})
    assert sorted(f.code for f in report.findings) == ["NBA031", "NBA061", "NBA070"]
    assert report.exit_code == 3 and len(report.runs) == 1
    assert report.notes == ["1 test parameter set(s) not run: the run with the default "
                            "parameters failed"]


def test_cell_timeout_comes_from_the_notebook_metadata(tmp_path: Path):
    start = time.perf_counter()
    report = validate(tmp_path, extra=["import time\ntime.sleep(30)"], meta={"timeout": 2})
    elapsed = time.perf_counter() - start
    assert [f.code for f in report.findings] == ["NBA071"]
    assert report.exit_code == 3 and elapsed < 25


def test_kernel_named_python_runs_as_python3(tmp_path: Path):
    """What NBA011 promises: a notebook whose kernelspec says `python` (and no language, so
    papermill asks the kernelspec) runs, with parameters, and has no finding."""
    report = validate(tmp_path, kernelspec={"name": "python", "display_name": "Python"},
                      meta={"test_parameters": [{"n": 5}]})
    assert report.findings == [] and [r["ok"] for r in report.runs] == [True, True]


def test_nba070_names_the_failing_line_and_the_last_frame(tmp_path: Path):
    helper = "def pick(d):\n    return d['nope']\n"
    report = validate(tmp_path, extra=[helper, "x = 1\nvalues = {}\npick(values)"])
    [finding] = report.findings
    assert finding.code == "NBA070" and finding.cell == 3
    assert finding.message.startswith("cell 4 (`x = 1`) raised KeyError: 'nope' (line 3: "
                                      "`pick(values)`; last frame: cell 3, line 2, in pick: "
                                      "`return d['nope']`)"), finding.message
    assert finding.to_dict()["cell"] == 4 and finding.to_dict()["cell_index"] == 3
