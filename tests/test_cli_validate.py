"""``nbapps validate`` as a user runs it: a real subprocess, exit statuses, no tracebacks, no
files left behind."""
from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from tests.nbfactory import make_notebook, write_notebook

SCRIPT = Path(sys.executable).with_name("nbapps")
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "nbapps.cli.main"]


@dataclass
class Result:
    code: int
    out: str
    err: str
    leftovers: list[str]


def run_cli(args: list[str], workdir: Path, tmp_root: Path, **env: str) -> Result:
    """Run the CLI in ``workdir`` with a private TMPDIR; report files left in that TMPDIR."""
    tmp_root.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ.update(TMPDIR=str(tmp_root), **env)
    proc = subprocess.run([*COMMAND, "validate", *args], cwd=workdir, env=environ,
                          capture_output=True, text=True, timeout=300)
    leftovers = sorted(str(p.relative_to(tmp_root)) for p in tmp_root.rglob("*"))
    return Result(proc.returncode, proc.stdout, proc.stderr, leftovers)


def run_many(cases: dict[str, list[str]], workdir: Path, tmp_path: Path) -> dict[str, Result]:
    """Run several invocations two at a time, each with its own TMPDIR."""
    def one(label: str) -> Result:
        return run_cli(cases[label], workdir, tmp_path / "tmp" / label.replace(" ", "_"))

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(cases, pool.map(one, cases), strict=True))


def snapshot(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


BROKEN: dict[str, bytes] = {
    "empty.ipynb": b"",
    "garbage.ipynb": bytes(range(256)) * 16,
    "truncated.ipynb": b'{"cells": [{"cell_type": "code", "source": "1 +',
    "package.ipynb": b'{"name": "not-a-notebook", "version": "1.0.0"}',
    "schema.ipynb": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "id": "a", "metadata": {}, "source": "1", "execution_count": None}
    ]}).encode(),
}
EXPECTED = {"empty.ipynb": "NBA006", "garbage.ipynb": "NBA002", "truncated.ipynb": "NBA002",
            "package.ipynb": "NBA003", "schema.ipynb": "NBA004"}


def test_broken_inputs_give_a_code_and_exit_1_without_traceback(tmp_path: Path):
    folder = tmp_path / "work"
    folder.mkdir()
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    before = snapshot(folder)
    cases = [(name, ["--no-execute", name]) for name in BROKEN]
    cases.append(("schema.ipynb (run)", ["schema.ipynb"]))  # execution enabled: still no run
    results = run_many({label: args for label, args in cases}, folder, tmp_path)
    for label, result in results.items():
        name = label.split(" ")[0]
        assert "Traceback" not in result.out + result.err, label
        assert result.code == 1, (label, result)
        # a schema violation names its cell ("schema.ipynb:cell 1 [1]  NBA004 error:")
        assert re.search(rf"^{re.escape(name)}(:cell \d+ \[\d+\])?  {EXPECTED[name]} error:",
                         result.out, re.M), (label, result.out)
        assert "fix: " in result.out
        assert result.out.rstrip().splitlines()[-1].startswith("1 notebook checked, 1 with errors")
        assert result.leftovers == [], label
    assert snapshot(folder) == before


def test_usage_errors_exit_2(tmp_path: Path):
    (tmp_path / "empty-folder").mkdir()
    write_notebook(make_notebook(), tmp_path / "ok.ipynb")
    cases = {
        "missing": (["nope.ipynb"], "NBA105"),
        "empty folder": (["empty-folder"], "NBA105"),
        "bad timeout": (["--timeout", "-1", "ok.ipynb"], "NBA100"),
        "bad workers": (["--workers", "zero", "ok.ipynb"], "NBA100"),
    }
    results = run_many({label: args for label, (args, _code) in cases.items()}, tmp_path,
                       tmp_path)
    for label, result in results.items():
        assert result.code == 2, (label, result)
        assert cases[label][1] in result.err, (label, result.err)
        assert "Traceback" not in result.out + result.err
        assert result.out == "" and result.leftovers == []


def test_upgraded_old_notebook_is_a_warning_exit_0(tmp_path: Path):
    (tmp_path / "old.ipynb").write_text(nbformat.writes(make_notebook(), version=3))
    result = run_cli(["--no-execute", "old.ipynb"], tmp_path, tmp_path / "tmp")
    assert result.code == 0, result
    assert "old.ipynb  NBA005 warning: nbformat 3.0 notebook upgraded" in result.out
    assert "old.ipynb  ok with 1 warning (not run" in result.out
    assert "\x1b[" not in result.out  # a pipe gets no colour


def test_json_output_for_a_folder(tmp_path: Path):
    write_notebook(make_notebook(), tmp_path / "apps" / "good.ipynb")
    write_notebook(make_notebook(widget=None), tmp_path / "apps" / "sub" / "nowidget.ipynb")
    (tmp_path / "apps" / "broken.ipynb").write_bytes(b"{")
    result = run_cli(["--no-execute", "--format", "json", "--workers", "2", "apps"], tmp_path,
                     tmp_path / "tmp")
    assert result.code == 1 and "Traceback" not in result.err
    doc = json.loads(result.out)
    assert [n["path"] for n in doc["notebooks"]] == ["apps/broken.ipynb", "apps/good.ipynb",
                                                     "apps/sub/nowidget.ipynb"]
    assert [[f["code"] for f in n["findings"]] for n in doc["notebooks"]] == [
        ["NBA002"], [], ["NBA030"]]
    assert doc["summary"]["notebooks"] == 3 and doc["summary"]["errors"] == 2
    assert doc["summary"]["exit_code"] == 1
    assert result.leftovers == []


def _run_in_pty(args: list[str], cwd: Path, **env: str) -> str:
    master, slave = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environ.update(env)
    proc = subprocess.Popen([*COMMAND, "validate", *args], cwd=cwd, env=environ, stdout=slave,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path: Path):
    write_notebook(make_notebook(widget=None), tmp_path / "a.ipynb")
    assert "\x1b[" in _run_in_pty(["--no-execute", "a.ipynb"], tmp_path)
    plain = _run_in_pty(["--no-execute", "a.ipynb"], tmp_path, NO_COLOR="1")
    assert "\x1b[" not in plain and "NBA030 error" in plain


@pytest.mark.kernel
def test_failed_run_exits_3(tmp_path: Path):
    write_notebook(make_notebook(widget="x = 1 / 0\nx"), tmp_path / "fail.ipynb")
    before = snapshot(tmp_path)
    result = run_cli(["fail.ipynb", "--timeout", "120"], tmp_path, tmp_path / "tmp")
    assert result.code == 3, result
    assert "fail.ipynb:cell 3 [x = 1 / 0]  NBA070 error:" in result.out
    assert "ZeroDivisionError" in result.out and "Traceback" not in result.err
    assert result.leftovers == [] and snapshot(tmp_path) == sorted(before + ["tmp"])
