"""``nbapps init``: the starter notebook validates without errors (its starter text is a warning
until replaced), bad names and existing files are refused, nothing is left half-written."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from nbapps.catalog.versions import check_slug
from nbapps.cli.main import main
from nbapps.errors import UsageError
from nbapps.scaffold import check_name, create_app, new_app_notebook, write_new
from nbapps.validate import ValidationSettings, validate_notebook

BAD_NAMES = ["Sales", "sales report", "-sales", "sales-", "sales--report", "sales_report",
             "ventes-été", "../sales", "sales/report", "", "a" * 81]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _edited(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The template after an author replaced its starter description, intro and tag."""
    nb.metadata.nbapps.description = "How 100 grows at a yearly rate, for savers."
    nb.metadata.nbapps.tags = ["finance"]
    nb.cells[1].source = nb.cells[1].source.split("\n\n")[0] + "\n\nHow savings grow."
    return nb


@pytest.mark.kernel
def test_created_notebook_validates_clean_when_run(tmp_path: Path):
    created = create_app("sales-report", tmp_path)
    nbformat.write(_edited(nbformat.read(created.path, as_version=4)), created.path)
    report = validate_notebook(created.path, ValidationSettings(cell_timeout=60,
                                                                 total_timeout=180))
    assert report.findings == [], [f"{f.code} {f.message}" for f in report.findings]
    # default parameters, then the template's test parameter set
    assert [run["ok"] for run in report.runs] == [True, True]
    shown = [c for c in report.executed.cells if "widget" in _tags(c) and c.cell_type == "code"]
    assert shown and all(c.outputs for c in shown)


def test_template_follows_the_conventions(tmp_path: Path):
    created = create_app("kpi-board", tmp_path, title="KPI board")
    assert created.path == tmp_path / "kpi-board" / "kpi-board.ipynb"
    nb = nbformat.read(created.path, as_version=4)
    nbformat.validate(nb)
    assert nb.cells[0].cell_type == "markdown" and "`parameters`" in nb.cells[0].source
    assert "nbapps validate kpi-board.ipynb" in nb.cells[0].source
    assert [i for i, c in enumerate(nb.cells) if "parameters" in _tags(c)] == [3]
    params = nb.cells[3].source.splitlines()
    assert len(params) == 2 and all("  # " in line for line in params)
    assert any("widget" in _tags(c) and c.cell_type == "code" for c in nb.cells)
    meta = nb.metadata.nbapps
    assert meta.title == "KPI board"
    assert meta.description.endswith(".") and meta.tags and meta.test_parameters
    assert nb.metadata.kernelspec.name == "python3"
    report = validate_notebook(created.path, ValidationSettings(execute=False))
    # an untouched template is not published without a word: its starter text is a warning
    assert [(f.code, f.severity.value, f.cell_number) for f in report.findings] == [
        ("NBA035", "warning", None), ("NBA035", "warning", 2)], report.findings
    assert report.ok and report.exit_code == 0
    assert "description" in report.findings[0].message and "`draft`" in \
        report.findings[0].message
    nbformat.write(_edited(nb), created.path)
    report = validate_notebook(created.path, ValidationSettings(execute=False))
    assert report.findings == [], [f"{f.code} {f.message}" for f in report.findings]
    # the heading follows the title: renaming the app only in the metadata is a warning
    nb.metadata.nbapps.title = "KPI dashboard"
    nbformat.write(nb, created.path)
    [finding] = validate_notebook(created.path, ValidationSettings(execute=False)).findings
    assert finding.code == "NBA036" and finding.cell_number == 2
    assert "“KPI board”" in finding.message and "“KPI dashboard”" in finding.message


def test_title_defaults_from_name():
    assert new_app_notebook("sales-report").metadata.nbapps.title == "Sales report"


def test_cli_prints_path_and_next_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["init", "loan-check", "--dir", str(tmp_path / "apps"), "--title", "Loan check"])
    out = capsys.readouterr().out
    path = tmp_path / "apps" / "loan-check" / "loan-check.ipynb"
    assert code == 0 and path.is_file()
    assert str(path) in out
    assert f"nbapps validate {path}" in out and f"nbapps publish {path}" in out
    assert nbformat.read(path, as_version=4).metadata.nbapps.title == "Loan check"


def test_cli_defaults_to_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]):
    monkeypatch.chdir(tmp_path)
    assert main(["init", "here"]) == 0
    assert (tmp_path / "here" / "here.ipynb").is_file()
    assert "nbapps validate here/here.ipynb" in capsys.readouterr().out


def test_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "sales" / "sales.ipynb"
    path.parent.mkdir()
    path.write_text("my work", encoding="utf-8")
    code = main(["init", "sales", "--dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "NBA106" in err and "already exists" in err and "fix:" in err
    assert path.read_text(encoding="utf-8") == "my work"
    assert os.listdir(path.parent) == ["sales.ipynb"]


def test_write_new_refuses_a_file_that_appeared(tmp_path: Path):
    """The final step is no-clobber too: a file created after the check is kept."""
    target = tmp_path / "x.ipynb"
    target.write_text("first", encoding="utf-8")
    with pytest.raises(UsageError) as info:
        write_new(target, "second")
    assert info.value.code == "NBA106"
    assert target.read_text(encoding="utf-8") == "first"
    assert os.listdir(tmp_path) == ["x.ipynb"]


def test_written_file_is_complete_and_readable_by_others(tmp_path: Path):
    target = tmp_path / "y.ipynb"
    write_new(target, "content\n")
    assert target.read_text(encoding="utf-8") == "content\n"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", BAD_NAMES)
def test_refuses_invalid_names(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["init", "--dir", str(tmp_path), "--", name])
    err = capsys.readouterr().err
    assert code == 2 and "NBA100" in err and "invalid app name" in err
    assert list(tmp_path.iterdir()) == []


def test_invalid_name_suggests_a_slug():
    with pytest.raises(UsageError, match=r"e\.g\. sales-report"):
        check_name("Sales Report")


@pytest.mark.parametrize("name", [*BAD_NAMES, "sales", "sales-report-2", "q4", "a" * 80])
def test_name_rule_matches_the_catalog_slug_rule(name: str):
    """An app created by init can be published under its own name."""
    def accepted(check) -> bool:
        try:
            check(name)
        except UsageError:
            return False
        return True

    assert accepted(check_name) == accepted(check_slug)


def test_refuses_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "taken").write_text("", encoding="utf-8")
    assert main(["init", "taken", "--dir", str(tmp_path)]) == 2
    assert "not a folder" in capsys.readouterr().err
