"""The static rules of ``nbapps validate``: a passing and a failing notebook for each code."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell

from nbapps.validate import ValidationSettings, validate_notebook
from tests.nbfactory import make_notebook, write_notebook

STATIC = ValidationSettings(execute=False)


def check(tmp_path: Path, nb=None, **kw):
    path = write_notebook(nb if nb is not None else make_notebook(**kw),
                          tmp_path / "app" / "app.ipynb")
    return validate_notebook(path, STATIC)


def codes(report) -> list[str]:
    return [f.code for f in report.findings]


def test_clean_notebook(tmp_path: Path):
    report = check(tmp_path)
    assert report.findings == [] and report.ok and report.exit_code == 0
    assert report.title == "Test app" and report.app is not None
    assert report.runs == [] and report.executed is None
    assert report.to_dict()["parameters"][0]["name"] == "n"


@pytest.mark.parametrize("data, code", [
    (b"", "NBA006"),
    (b"\x00\xff\xfe garbage \x80", "NBA002"),
    (b"{oops", "NBA002"),
    (b'{"hello": "world"}', "NBA003"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "code", '
     b'"id": "a", "metadata": {}, "source": "", "execution_count": null}]}', "NBA004"),
])
def test_unusable_input_is_one_finding_not_an_exception(tmp_path: Path, data: bytes, code: str):
    path = tmp_path / "bad.ipynb"
    path.write_bytes(data)
    for source in (path, data):
        report = validate_notebook(source, STATIC)
        assert codes(report) == [code]
        assert report.exit_code == 1 and not report.ok and report.app is None
        assert report.to_dict()["parameters"] is None
    assert validate_notebook(data, STATIC, name="upload.ipynb").path == "upload.ipynb"


def test_missing_file_is_nba001(tmp_path: Path):
    report = validate_notebook(tmp_path / "nope.ipynb", STATIC)
    assert codes(report) == ["NBA001"] and report.findings[0].path.endswith("nope.ipynb")


def test_nbformat3_upgraded_warning_and_still_validated(tmp_path: Path):
    path = tmp_path / "v3.ipynb"
    path.write_text(nbformat.writes(make_notebook(widget=None), version=3))
    report = validate_notebook(path, STATIC)
    assert codes(report) == ["NBA005", "NBA030"]
    assert report.findings[0].severity.value == "warning"


# -- kernel ---------------------------------------------------------------------------------------


def test_no_kernelspec(tmp_path: Path):
    report = check(tmp_path, kernelspec=None)
    assert codes(report) == ["NBA010"]


def test_kernel_not_installed_names_it_and_the_installed_ones(tmp_path: Path):
    report = check(tmp_path, kernelspec={"name": "julia-9.9", "display_name": "Julia",
                                         "language": "julia"})
    assert codes(report) == ["NBA011"]
    message = report.findings[0].message
    assert "'julia-9.9'" in message and "python3" in message


def test_kernel_names_resolve_as_jupyter_client_does(tmp_path: Path):
    """papermill (jupyter_client) runs `python` as `python3` and finds kernels whatever the
    case of their name: no NBA011 for what would run."""
    for name in ("python", "Python3", "python3"):
        report = check(tmp_path, kernelspec={"name": name, "display_name": "Python",
                                             "language": "python"})
        assert "NBA011" not in codes(report), name


def test_kernel_override_is_checked_instead(tmp_path: Path):
    path = write_notebook(make_notebook(), tmp_path / "a.ipynb")
    report = validate_notebook(path, ValidationSettings(execute=False, kernel_name="nope-kernel"))
    assert codes(report) == ["NBA011"] and "requested kernel 'nope-kernel'" in \
        report.findings[0].message


def test_blocking_errors_prevent_running(tmp_path: Path):
    path = write_notebook(make_notebook(kernelspec=None), tmp_path / "a.ipynb")
    report = validate_notebook(path, ValidationSettings(execute=True))
    assert codes(report) == ["NBA010"] and report.runs == []
    assert report.notes == ["not run because of NBA010"]


# -- parameters and tags --------------------------------------------------------------------------


def test_no_parameters_cell(tmp_path: Path):
    assert codes(check(tmp_path, params=None, widget="1")) == ["NBA020"]


def test_parameters_tag_on_markdown_does_not_count(tmp_path: Path):
    nb = make_notebook(params=None, widget="1")
    nb.cells.insert(1, new_markdown_cell("n = 1", metadata={"tags": ["parameters"]}))
    report = check(tmp_path, nb)
    assert codes(report) == ["NBA020"] and "not a code cell" in report.findings[0].message


def test_two_parameters_cells(tmp_path: Path):
    report = check(tmp_path, extra=[new_code_cell("m = 1", metadata={"tags": ["parameters"]})])
    assert codes(report) == ["NBA021"]
    assert report.findings[0].cell == 2 and report.findings[0].cell_line == "m = 1"


def test_parameters_cell_not_literal_assignments(tmp_path: Path):
    report = check(tmp_path, params="import os\nn = int(os.environ['N'])\n")
    assert codes(report) == ["NBA022"]
    assert "line 1" in report.findings[0].message and "line 2" in report.findings[0].message


def test_injected_parameters_tag(tmp_path: Path):
    report = check(tmp_path, extra=[new_code_cell("n = 4", metadata={"tags":
                                                                     ["injected-parameters"]})])
    assert codes(report) == ["NBA023"] and report.ok


def test_invalid_constraint(tmp_path: Path):
    report = check(tmp_path, meta={"parameters": {"n": {"choices": [1, 2]}}})
    assert codes(report) == ["NBA024"] and "default 3 is not allowed" in \
        report.findings[0].message
    ok = check(tmp_path, meta={"parameters": {"n": {"choices": [1, 2, 3]}}})
    assert ok.findings == []


# -- app metadata ---------------------------------------------------------------------------------


def test_no_widget_cell(tmp_path: Path):
    assert codes(check(tmp_path, widget=None)) == ["NBA030"]


@pytest.mark.parametrize("meta, expected", [
    ({"title": ""}, ["NBA031"]),
    ({"title": "   "}, ["NBA031"]),
    ({"description": ""}, ["NBA032"]),
    ({"title": 42}, ["NBA033"]),
    ({"tags": "one"}, ["NBA033"]),
    ({"timeout": 0}, ["NBA033"]),
    ({"timeout": True}, ["NBA033"]),
    ({"descripton": "typo"}, ["NBA034"]),
])
def test_metadata_rules(tmp_path: Path, meta: dict, expected: list[str]):
    assert codes(check(tmp_path, meta=meta)) == expected


def test_no_nbapps_metadata_at_all(tmp_path: Path):
    nb = make_notebook()
    del nb.metadata["nbapps"]
    assert codes(check(tmp_path, nb)) == ["NBA031", "NBA032"]


# -- test parameters ------------------------------------------------------------------------------


def test_test_parameters(tmp_path: Path):
    meta = {"test_parameters": [{"n": 5}, {"n": 5, "label": "y"}, {}],
            "parameters": {"n": {"min": 0, "max": 9}}}
    assert check(tmp_path, meta=meta).findings == []
    meta["test_parameters"] = [{"n": 5, "colour": "red"}, {"n": "5"}, {"n": 10}, {"n": True},
                               {"label": None}]
    report = check(tmp_path, meta=meta)
    assert codes(report) == ["NBA040", "NBA041", "NBA042", "NBA041", "NBA041"]
    messages = [f.message for f in report.findings]
    assert messages[0].startswith("test_parameters[0]: unknown parameter 'colour'")
    assert messages[2].startswith("test_parameters[2]:") and "maximum is 9" in messages[2]


def test_test_parameters_without_parameters_cell(tmp_path: Path):
    report = check(tmp_path, params=None, widget="1", meta={"test_parameters": [{"n": 1}]})
    assert codes(report) == ["NBA020", "NBA040"]


# -- shell escapes --------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "!ls -l", "files = !ls", "!!ls", "%system ls", "%sx ls", "x = %sx ls", "%%bash\necho hi",
    "%%script bash\necho hi", "%%sh\nls", "%%time\n!ls", "%pip install requests",
    "import os\nif True:\n    !rm -rf /tmp/x\n",
])
def test_shell_escape_is_a_warning(tmp_path: Path, source: str):
    report = check(tmp_path, extra=[source])
    assert codes(report) == ["NBA061"]
    assert report.ok and report.exit_code == 0 and report.findings[0].cell == 2


@pytest.mark.parametrize("source", [
    "a = 1 != 2", "s = '!ls'", "# !ls in a comment", "%matplotlib inline", "x = 'a %sx b'",
    "%%time\nx = 1", "print('%%bash')",
])
def test_not_a_shell_escape(tmp_path: Path, source: str):
    assert check(tmp_path, extra=[source]).findings == []


def test_markdown_mentioning_a_shell_command_is_fine(tmp_path: Path):
    nb = make_notebook()
    nb.cells.append(new_markdown_cell("Run `!ls` or\n\n!ls"))
    assert check(tmp_path, nb).findings == []


def test_shell_escape_message_names_the_lines(tmp_path: Path):
    report = check(tmp_path, extra=["x = 1\n!pip install a\n!pip install b\n"])
    assert "line 2: `!pip install a`" in report.findings[0].message
    assert "line 3" in report.findings[0].message


# -- declared files and thumbnail -----------------------------------------------------------------


def test_declared_files(tmp_path: Path):
    folder = tmp_path / "app"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "sales.csv").write_text("a,b\n1,2\n")
    (folder / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    good = {"files": ["data/sales.csv", "data", "data/*.csv"], "thumbnail": "thumb.png"}
    assert check(tmp_path, meta=good).findings == []


@pytest.mark.parametrize("entry, fragment", [
    ("missing.csv", "does not exist"),
    ("/etc/passwd", "absolute path"),
    ("../secret.txt", "outside the notebook's folder"),
    ("data/../../x", "outside the notebook's folder"),
    ("~/x.csv", "absolute path"),
    ("C:\\data\\x.csv", "absolute path"),
    ("*.parquet", "matches no file"),
    ("", "is empty"),
])
def test_bad_declared_files(tmp_path: Path, entry: str, fragment: str):
    report = check(tmp_path, meta={"files": [entry]})
    assert codes(report) == ["NBA062"], report.findings
    assert fragment in report.findings[0].message


def test_declared_file_linking_outside_the_folder(tmp_path: Path):
    (tmp_path / "outside.csv").write_text("x")
    folder = tmp_path / "app"
    folder.mkdir()
    os.symlink(tmp_path / "outside.csv", folder / "link.csv")
    report = check(tmp_path, meta={"files": ["link.csv"]})
    assert codes(report) == ["NBA062"] and "through a link" in report.findings[0].message


@pytest.mark.parametrize("thumbnail, fragment", [
    ("thumb.png", "does not exist"),
    ("/tmp/thumb.png", "absolute path"),
    ("../thumb.png", "outside"),
    (".", "is not a file"),
])
def test_bad_thumbnail(tmp_path: Path, thumbnail: str, fragment: str):
    report = check(tmp_path, meta={"thumbnail": thumbnail})
    assert codes(report) == ["NBA063"] and fragment in report.findings[0].message


def test_paths_in_an_uploaded_notebook_are_only_checked_for_escapes():
    data = nbformat.writes(make_notebook(meta={"files": ["data.csv", "../x"],
                                               "thumbnail": "t.png"})).encode()
    report = validate_notebook(data, STATIC)
    assert codes(report) == ["NBA062"] and "../x" in report.findings[0].message


def test_report_json_is_serialisable(tmp_path: Path):
    report = check(tmp_path, widget=None, extra=["!ls"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["errors"] == 1 and data["warnings"] == 1 and data["exit_code"] == 1
    assert {f["code"] for f in data["findings"]} == {"NBA030", "NBA061"}
    assert all(f["path"].endswith("app.ipynb") for f in data["findings"])


@pytest.mark.parametrize("source, heading", [
    ("# Sales *dashboard*\n\ntext", "Sales dashboard"),
    ("intro\n\nSales dashboard\n===============\n", "Sales dashboard"),
    ("```\n# not a heading\n```\n# [Sales](http://x) dashboard #", "Sales dashboard"),
    ("## Section only\n", None),
])
def test_first_heading(source, heading):
    from nbapps.validation.rules import first_heading

    assert first_heading(source) == heading


def test_heading_that_matches_the_title_up_to_case_and_marks_is_fine(tmp_path: Path):
    head = new_markdown_cell("# test APP.", metadata={"tags": ["widget"]})
    assert codes(check(tmp_path, extra=[head])) == []
    other = new_markdown_cell("# My app", metadata={"tags": ["widget"]})
    report = check(tmp_path, extra=[other])
    assert codes(report) == ["NBA036"] and report.ok and report.findings[0].cell_number == 3
