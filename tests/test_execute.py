"""nbapps.execute with real kernels: parameters, timeouts, and one finding per failure kind."""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from nbapps.execute import app_files, run_app, run_notebook, run_notebook_file
from nbapps.notebook import load_notebook
from tests.nbfactory import make_notebook, write_notebook

pytestmark = pytest.mark.kernel

ENDLESS = "import time\nwhile True:\n    time.sleep(0.05)"


def _kernel_processes() -> list[psutil.Process]:
    """Our child processes that are Jupyter kernels."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.NoSuchProcess:
            pass
    return out


def _run(tmp_path: Path, nb: nbformat.NotebookNode, params: dict | None = None,
         cell_timeout: float = 20, total_timeout: float = 60):
    return run_notebook(nb, params or {}, cwd=tmp_path, cell_timeout=cell_timeout,
                        total_timeout=total_timeout)


def _codes(result) -> list[str]:
    return [f.code for f in result.findings]


def test_parameters_are_injected_and_visible(tmp_path: Path) -> None:
    nb = make_notebook(extra=["print('n is', n, 'label is', label)"])
    result = _run(tmp_path, nb, {"n": 7, "label": "seven"})
    assert result.ok, result.findings
    injected = [c for c in result.nb.cells if "injected-parameters" in c.metadata.tags]
    assert len(injected) == 1 and "n = 7" in injected[0].source
    # cell indices are those of the source notebook: 0 markdown, 1 parameters, 2 print, 3 widget
    printed = result.nb.cells[3].outputs[0].text
    assert printed.strip() == "n is 7 label is seven"
    assert set(result.cell_seconds) == {1, 2, 3}
    assert all(0 <= s < 10 for s in result.cell_seconds.values())
    summary = result.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["ok"] is True and summary["parameters"] == {"n": 7, "label": "seven"}
    widget = result.nb.cells[4].outputs
    assert any(o.output_type == "execute_result" for o in widget)


def test_default_run_has_no_injected_cell(tmp_path: Path) -> None:
    nb = make_notebook()
    result = _run(tmp_path, nb)
    assert result.ok
    assert len(result.nb.cells) == len(nb.cells)
    assert "widgets" in result.nb.metadata  # widget state kept for the static page


def test_exception_names_cell_type_and_message(tmp_path: Path) -> None:
    nb = make_notebook(extra=["x = 1", "values = {}\nvalues['missing']"])
    result = _run(tmp_path, nb, {"n": 4})
    assert not result.ok
    assert _codes(result) == ["NBA070"]
    finding = result.findings[0]
    assert finding.cell == 3 and finding.cell_line == "values = {}"
    assert "KeyError" in finding.message and "'missing'" in finding.message
    # one numbering: the message names the cell as JupyterLab numbers it (index 3 = cell 4),
    # with the failing line of that cell
    assert finding.message.startswith("cell 4 (`values = {}`) raised KeyError")
    assert "line 2: `values['missing']`" in finding.message
    # the widget cell after the failure did not run: no NBA074 for it
    assert 4 not in result.cell_seconds


def test_endless_cell_hits_cell_timeout_and_leaves_nothing(tmp_path: Path) -> None:
    nb = make_notebook(extra=[ENDLESS])
    before = {p.pid for p in _kernel_processes()}
    start = time.monotonic()
    result = _run(tmp_path, nb, cell_timeout=2, total_timeout=60)
    elapsed = time.monotonic() - start
    assert _codes(result) == ["NBA071"]
    assert result.findings[0].cell == 2
    assert elapsed < 2 + 8  # kernel start + timeout + stop
    assert {p.pid for p in _kernel_processes()} - before == set()


def test_endless_cell_hits_total_timeout_within_seconds(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    app_dir = tmp_path / "app"
    write_notebook(make_notebook(extra=[ENDLESS]), app_dir / "app.ipynb")
    app = load_notebook(app_dir / "app.ipynb")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))  # the run's temp folders go here
    before = {p.pid for p in _kernel_processes()}
    start = time.monotonic()
    result = run_app(app, {}, cell_timeout=60, total_timeout=3)
    elapsed = time.monotonic() - start
    assert _codes(result) == ["NBA072"]
    assert result.findings[0].cell == 2 and "total timeout (3s)" in result.findings[0].message
    assert elapsed < 3 + 2.5
    assert {p.pid for p in _kernel_processes()} - before == set()
    assert list(private_tmp.iterdir()) == []


def test_kernel_death_is_nba073(tmp_path: Path) -> None:
    nb = make_notebook(extra=["import os\nos._exit(1)"])
    result = _run(tmp_path, nb)
    assert _codes(result) == ["NBA073"]
    assert result.findings[0].cell == 2 and "died" in result.findings[0].message


def test_unknown_kernel_and_missing_kernelspec_are_nba076(tmp_path: Path) -> None:
    unknown = make_notebook(kernelspec={"name": "no-such-kernel-xyz", "display_name": "x",
                                        "language": "python"})
    result = _run(tmp_path, unknown)
    assert _codes(result) == ["NBA076"]
    assert "no-such-kernel-xyz" in result.findings[0].message
    assert "python3" in result.findings[0].message  # lists what is installed
    missing = make_notebook(kernelspec=None)
    result = _run(tmp_path, missing, {"n": 1})
    assert _codes(result) == ["NBA076"] and "kernelspec" in result.findings[0].message
    nameless = make_notebook(kernelspec={"name": "nope-xyz", "display_name": "x"})
    del nameless.metadata["language_info"]  # papermill must ask the (missing) kernel's spec
    result = _run(tmp_path, nameless, {"n": 1})
    assert _codes(result) == ["NBA076"] and "nope-xyz" in result.findings[0].message


def test_unknown_magic_is_nba075(tmp_path: Path) -> None:
    result = _run(tmp_path, make_notebook(extra=["%no_such_magic 3"]))
    assert _codes(result) == ["NBA075"]
    assert "no_such_magic" in result.findings[0].message and result.findings[0].cell == 2


def test_widget_cell_without_display_is_nba074(tmp_path: Path) -> None:
    result = _run(tmp_path, make_notebook(widget="total = n * 2"))
    assert _codes(result) == ["NBA074"]
    assert result.findings[0].cell == 2


def test_exception_captured_by_output_widget_is_nba077(tmp_path: Path) -> None:
    widget = (
        "import ipywidgets as w\nout = w.Output()\n"
        "@out.capture()\ndef start():\n    raise ValueError('bad start')\n"
        "start()\nw.VBox([w.Label('x'), out])"
    )
    result = _run(tmp_path, make_notebook(widget=widget))
    assert _codes(result) == ["NBA077"]
    assert result.findings[0].cell == 2 and "ValueError: bad start" in result.findings[0].message


def test_run_app_copies_only_declared_files(tmp_path: Path) -> None:
    app_dir = tmp_path / "app"
    (app_dir / "data").mkdir(parents=True)
    (app_dir / "data" / "a.csv").write_text("x\n1\n")
    (app_dir / "secret.txt").write_text("not declared")
    check = ("import os\nassert os.path.exists('data/a.csv')\n"
             "assert not os.path.exists('secret.txt')")
    write_notebook(make_notebook(extra=[check], meta={"files": ["data"]}), app_dir / "app.ipynb")
    app = load_notebook(app_dir / "app.ipynb")
    assert app_files(app) == ["data/a.csv"]
    result = run_app(app, {}, cell_timeout=20, total_timeout=60)
    assert result.ok, result.findings
    assert app.nb.metadata.get("papermill") is None  # the app's notebook is not modified


def test_run_notebook_file_writes_output_also_on_failure(tmp_path: Path) -> None:
    src = write_notebook(make_notebook(extra=["raise RuntimeError('nope')"]), tmp_path / "a.ipynb")
    out = tmp_path / "out" / "a.out.ipynb"
    result = run_notebook_file(src, out, {"n": 2}, cell_timeout=20, total_timeout=60)
    assert _codes(result) == ["NBA070"]
    written = nbformat.read(out, as_version=4)
    assert any(o.get("ename") == "RuntimeError" for c in written.cells
               for o in c.get("outputs", []))
    assert [p.name for p in out.parent.iterdir()] == ["a.out.ipynb"]  # no temp file left
