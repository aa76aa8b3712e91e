"""Many notebooks: folder expansion, the process pool, and the text / JSON renderings."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nbapps.errors import UsageError
from nbapps.validate import (
    ValidationSettings,
    exit_code,
    expand_paths,
    render_json,
    render_text,
    validate_notebook,
    validate_paths,
)
from tests.nbfactory import make_notebook, write_notebook

STATIC = ValidationSettings(execute=False)
ANSI = re.compile(r"\x1b\[")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """b/ok.ipynb (clean), a/bad.ipynb (no widget + shell), c.ipynb (warning only), and files
    that folder expansion must skip."""
    write_notebook(make_notebook(), tmp_path / "b" / "ok.ipynb")
    write_notebook(make_notebook(widget=None, extra=["!ls"]), tmp_path / "a" / "bad.ipynb")
    write_notebook(make_notebook(extra=["!ls"]), tmp_path / "c.ipynb")
    write_notebook(make_notebook(widget=None), tmp_path / "b" / ".ipynb_checkpoints" /
                   "ok-checkpoint.ipynb")
    write_notebook(make_notebook(widget=None), tmp_path / ".hidden" / "x.ipynb")
    (tmp_path / "notes.txt").write_text("not a notebook")
    return tmp_path


def test_expand_paths(tree: Path):
    found = expand_paths([tree])
    assert [p.relative_to(tree).as_posix() for p in found] == ["a/bad.ipynb", "b/ok.ipynb",
                                                               "c.ipynb"]
    again = expand_paths([tree / "c.ipynb", tree, tree / "notes.txt"])
    assert len(again) == 4 and again == sorted(again, key=str)
    assert expand_paths([tree / ".hidden"]) == [tree / ".hidden" / "x.ipynb"]


def test_expand_paths_refuses_missing_and_empty(tmp_path: Path):
    with pytest.raises(UsageError) as info:
        expand_paths([tmp_path / "nope"])
    assert info.value.code == "NBA105" and info.value.exit_code == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as info:
        expand_paths([tmp_path / "empty"])
    assert info.value.code == "NBA105" and "no notebooks" in info.value.message


def test_parallel_matches_serial_and_is_sorted(tree: Path):
    serial = validate_paths([tree], STATIC, workers=1)
    parallel = validate_paths([tree], STATIC, workers=2)
    assert [r.path for r in parallel] == [r.path for r in serial] == sorted(r.path for r in serial)
    assert [r.to_dict()["findings"] for r in parallel] == [r.to_dict()["findings"] for r in serial]
    assert [r.exit_code for r in parallel] == [1, 0, 0]
    assert exit_code(parallel) == 1 and exit_code([]) == 0


def test_render_text(tree: Path):
    reports = validate_paths([tree], STATIC, workers=1)
    text = render_text(reports, color=False, elapsed=1.25)
    assert not ANSI.search(text)
    bad = str(tree / "a" / "bad.ipynb")
    lines = text.splitlines()
    assert f"{bad}  NBA030 error: no cell is tagged `widget`, so the app would show " \
           "nothing" in lines
    assert f"{bad}:cell 3 [!ls]  NBA061 warning: runs shell commands: line 1: `!ls`" in lines
    assert any(line.startswith("    fix: Tag the cells that make up the app") for line in lines)
    assert f"{tree / 'b' / 'ok.ipynb'}  ok (not run, " in text
    assert f"{tree / 'c.ipynb'}  ok with 1 warning (not run, " in text
    assert lines[-1] == "3 notebooks checked, 1 with errors, 1 error, 2 warnings in 1.2 s"
    coloured = render_text(reports, color=True)
    assert ANSI.search(coloured) and "NBA030" in coloured


def test_render_text_multiline_message_is_indented():
    from nbapps.findings import Finding
    from nbapps.validate import Report

    report = Report(path="x.ipynb", title=None, findings=[
        Finding("NBA070", "ZeroDivisionError: division by zero\nTraceback line 1\nline 2",
                cell=4, cell_line="1 / 0")])
    text = render_text([report], color=False)
    assert "x.ipynb:cell 5 [1 / 0]  NBA070 error: ZeroDivisionError: division by zero\n" \
           "    Traceback line 1\n    line 2\n    fix: " in text


def test_render_json_is_a_stable_document(tree: Path):
    reports = validate_paths([tree], STATIC, workers=1)
    doc = json.loads(render_json(reports, elapsed=2.0))
    assert set(doc) == {"notebooks", "summary"}
    assert doc["summary"] == {"notebooks": 3, "ok": 2, "with_errors": 1, "errors": 1,
                              "warnings": 2, "exit_code": 1, "duration": 2.0}
    first = doc["notebooks"][0]
    assert set(first) == {"path", "title", "ok", "exit_code", "errors", "warnings", "duration",
                          "findings", "runs", "parameters", "notes"}
    assert set(first["findings"][0]) == {"code", "message", "cell", "cell_index", "cell_line",
                                         "severity", "hint", "path"}
    # one numbering for people: `cell` is 1-based as in the text report; tools get cell_index
    cell_findings = [f for r in doc["notebooks"] for f in r["findings"] if f["cell"] is not None]
    assert cell_findings and all(f["cell"] == f["cell_index"] + 1 for f in cell_findings)
    text = render_text(reports, color=False)
    assert all(f":cell {f['cell']} [{f['cell_line']}]" in text for f in cell_findings)
    assert first["parameters"][0] == {"name": "n", "type": "int", "default": 3,
                                      "help": "how many", "choices": None, "min": None,
                                      "max": None}


def test_unreadable_notebook_renders_without_a_cell(tmp_path: Path):
    path = tmp_path / "broken.ipynb"
    path.write_bytes(b"\x00\x01")
    text = render_text([validate_notebook(path, STATIC)], color=False)
    assert f"{path}  NBA002 error: a binary file, not a notebook" in text
