"""``nbapps run`` and ``nbapps bundle`` through the real command-line entry point."""
from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from nbapps.cli.main import main
from nbapps.kernel import track_kernels
from tests.nbfactory import make_notebook, write_notebook

PARAMS = 'n = 3  # how many\nlabel = "x"  # a label\nitems = [1, 2]  # some numbers\n'
SHOW = "print('n', n, 'label', label, 'items', items)"


@pytest.fixture
def nb_path(tmp_path: Path) -> Path:
    meta = {"parameters": {"n": {"min": 0, "max": 10}}}
    return write_notebook(make_notebook(params=PARAMS, extra=[SHOW], meta=meta),
                          tmp_path / "app.ipynb")


def _printed(out_path: Path) -> str:
    nb = nbformat.read(out_path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.kernel
def test_run_with_p_and_f(nb_path: Path, tmp_path: Path, capsys) -> None:
    params = tmp_path / "p.yaml"
    params.write_text("label: from-file\nn: 9\n")
    out = tmp_path / "out.ipynb"
    code = main(["run", str(nb_path), "-f", str(params), "-p", "n", "5", "-p", "items", "7",
                 "-p", "items", "8", "-o", str(out), "--json"])
    assert code == 0
    assert _printed(out).strip() == "n 5 label from-file items [7, 8]"
    summary = json.loads(capsys.readouterr().out)
    assert summary["ok"] and summary["parameters"] == {"label": "from-file", "n": 5,
                                                       "items": [7, 8]}


@pytest.mark.parametrize("argv, code, expected", [
    (["-p", "colour", "red"], "NBA101", "unknown parameter 'colour'"),
    (["-p", "n", "many"], "NBA102", "expects an integer"),
    (["-p", "n", "11"], "NBA103", "maximum is 10"),
])
def test_run_refuses_bad_parameters_before_any_kernel(nb_path: Path, tmp_path: Path, capsys,
                                                      argv, code, expected) -> None:
    out = tmp_path / "out.ipynb"
    start = time.monotonic()
    with track_kernels() as seen:
        status = main(["run", str(nb_path), *argv, "-o", str(out)])
    assert time.monotonic() - start < 2
    assert status == 2 and seen.managers == [] and not out.exists()
    err = capsys.readouterr().err
    assert f"{code}:" in err and expected in err
    assert "n (int, default 3; min 0, max 10)  how many" in err  # the allowed parameters
    assert "label (str" in err and "items (list" in err


@pytest.mark.parametrize("content, expected", [
    (None, "cannot be read"),
    ("n: [unclosed\n", "not valid YAML"),
    ("- 1\n- 2\n", "must hold a mapping"),
    ("n: 'five'\n", "NBA102"),
])
def test_run_refuses_bad_parameter_files(nb_path: Path, tmp_path: Path, capsys, content,
                                         expected) -> None:
    params = tmp_path / "p.yaml"
    if content is not None:
        params.write_text(content)
    with track_kernels() as seen:
        status = main(["run", str(nb_path), "-f", str(params), "-o", str(tmp_path / "o.ipynb")])
    err = capsys.readouterr().err
    assert status == 2 and seen.managers == []
    assert expected in err
    if content is None or "YAML" in expected or "mapping" in expected:
        assert "NBA104" in err


@pytest.mark.kernel
def test_run_failure_exits_3_and_keeps_the_partial_notebook(tmp_path: Path, capsys) -> None:
    src = write_notebook(make_notebook(extra=["import json\njson.loads('{')"]),
                         tmp_path / "bad.ipynb")
    out = tmp_path / "bad.out.ipynb"
    assert main(["run", str(src), "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "NBA070" in err and "JSONDecodeError" in err
    assert "cell 3 (`import json`)" in err  # 1-based, like the notebook UI
    assert out.exists() and "JSONDecodeError" in out.read_text()


@pytest.mark.kernel
def test_bundle_command(nb_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bundles"
    assert main(["bundle", str(nb_path), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = Path(printed.splitlines()[0].split(" ", 1)[1])
    assert folder.parent == out and folder.name.startswith("test-app-")
    assert (folder / "manifest.json").exists()
    assert printed.splitlines()[1] == "sha256 " + json.loads(
        (folder / "manifest.json").read_text())["sha256"]


def test_bundle_command_refuses_errors(tmp_path: Path, capsys) -> None:
    src = write_notebook(make_notebook(widget=None, meta={"description": ""}),
                         tmp_path / "a.ipynb")
    out = tmp_path / "bundles"
    with track_kernels() as seen:
        status = main(["bundle", str(src), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1 and not out.exists()
    assert "NBA030" in captured.out and "NBA032" in captured.out
    assert "not bundled" in captured.err
    assert len(seen.managers) <= 1  # validation may run it once; no bundle run


@pytest.mark.kernel
def test_run_sees_only_declared_files_unless_cwd_is_given(tmp_path: Path, capsys) -> None:
    src = write_notebook(make_notebook(extra=["print(open('local.txt').read())"]),
                         tmp_path / "app" / "a.ipynb")
    (tmp_path / "app" / "local.txt").write_text("hello")
    out = tmp_path / "out.ipynb"
    assert main(["run", str(src), "-o", str(out)]) == 3
    assert "FileNotFoundError" in capsys.readouterr().err
    assert main(["run", str(src), "-o", str(out), "--cwd", str(tmp_path / "app")]) == 0
    assert "hello" in _printed(out)


def test_run_refuses_to_overwrite_the_notebook(nb_path: Path, capsys) -> None:
    assert main(["run", str(nb_path), "-o", str(nb_path)]) == 2
    assert "NBA100" in capsys.readouterr().err
