"""The app runners' Landlock sandbox (nbapps.sandbox): what confined code can open."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbapps import sandbox

needs_landlock = pytest.mark.skipif(not sandbox.available(),
                                    reason="Landlock is not available on this kernel")

PROBE = """
import os, sys
for path in sys.argv[1:]:
    try:
        if path.startswith("w:"):
            path = path[2:]
            with open(path, "w") as f:
                f.write("written")
        with open(path) as f:
            print(path, "READ", f.read().strip())
    except PermissionError:
        print(path, "DENIED")
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """data/ with a secret and another runner's folder; data/runtime/runners/mine is ours."""
    data = tmp_path / "data"
    (data / "runtime" / "runners" / "mine").mkdir(parents=True)
    (data / "runtime" / "runners" / "theirs").mkdir(parents=True)
    (data / "cookie_secret").write_text("top-secret")
    (data / "runtime" / "runners" / "theirs" / "token").write_text("their-token")
    (data / "runtime" / "share").mkdir()
    (data / "runtime" / "share" / "template.txt").write_text("shared")
    return data


def confined(tree: Path, *paths: str, cwd: Path | None = None) -> dict[str, str]:
    mine = tree / "runtime" / "runners" / "mine"
    cmd = sandbox.command([sys.executable, "-c", PROBE, *paths],
                          read=[tree / "runtime" / "share"], write=[mine],
                          protect=[tree])
    proc = subprocess.run(cmd, cwd=cwd or mine, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        path, _, verdict = line.rpartition(" ")
        if verdict not in ("DENIED",):
            path, verdict = line.split(" ", 2)[0], line.split(" ", 2)[1]
        out[path] = verdict
    return out


@needs_landlock
def test_confined_code_reads_only_what_it_is_given(tree: Path):
    mine = tree / "runtime" / "runners" / "mine"
    out = confined(tree, str(tree / "cookie_secret"),
                   str(tree / "runtime" / "runners" / "theirs" / "token"),
                   str(tree / "runtime" / "share" / "template.txt"),
                   "w:" + str(mine / "scratch.txt"),
                   "w:" + str(tree / "planted.txt"))
    assert out[str(tree / "cookie_secret")] == "DENIED"
    assert out[str(tree / "runtime" / "runners" / "theirs" / "token")] == "DENIED"
    assert out[str(tree / "runtime" / "share" / "template.txt")] == "READ"
    assert out[str(mine / "scratch.txt")] == "READ"
    assert out[str(tree / "planted.txt")] == "DENIED"
    assert not (tree / "planted.txt").exists()


@needs_landlock
def test_links_and_proc_paths_do_not_get_around_it(tree: Path):
    mine = tree / "runtime" / "runners" / "mine"
    (mine / "link").symlink_to(tree / "cookie_secret")
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=tree)
    try:
        via_proc = f"/proc/{outside.pid}/cwd/cookie_secret"
        out = confined(tree, str(mine / "link"), via_proc)
    finally:
        outside.kill()
        outside.wait()
    assert out[str(mine / "link")] == "DENIED"
    assert out[via_proc] == "DENIED"


@needs_landlock
def test_children_inherit_the_confinement(tree: Path):
    mine = tree / "runtime" / "runners" / "mine"
    inner = f"open({str(tree / 'cookie_secret')!r}).read()"
    child = (f"import subprocess, sys; r = subprocess.run([sys.executable, '-c', {inner!r}], "
             "capture_output=True, text=True); print(r.stderr.splitlines()[-1])")
    cmd = sandbox.command([sys.executable, "-c", child], read=[], write=[mine], protect=[tree])
    proc = subprocess.run(cmd, cwd=mine, capture_output=True, text=True, timeout=60)
    assert "PermissionError" in proc.stdout, proc.stdout + proc.stderr


def test_broad_folders_holding_protected_data_are_left_out(tmp_path: Path, monkeypatch):
    data = tmp_path / "srv" / "data"
    data.mkdir(parents=True)
    monkeypatch.syspath_prepend(str(tmp_path / "srv"))  # e.g. `python -m` run from /srv
    cmd = sandbox.command(["true"], read=[data / "runtime" / "share"],
                          write=[data / "runtime" / "runners" / "x"], protect=[data])
    reads = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--read"]
    assert str(tmp_path / "srv") not in reads
    assert str(data / "runtime" / "share") in reads  # asked for explicitly: kept
    assert sys.prefix in reads and "/usr" in reads


def test_unavailable_landlock_is_reported_not_ignored(tree: Path, monkeypatch):
    monkeypatch.setattr(sandbox, "abi_version", lambda: 0)
    assert not sandbox.available()
    with pytest.raises(OSError, match="not available"):
        sandbox.restrict([], [])


def test_launcher_without_command_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "nbapps.sandbox", "--read", "/usr"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == 2 and "no command given" in proc.stderr


@pytest.mark.skipif(sandbox.abi_version() < 6, reason="signal scoping needs Landlock ABI 6")
def test_confined_code_cannot_signal_the_gallery(tree: Path):
    mine = tree / "runtime" / "runners" / "mine"
    code = (f"import os\ntry:\n    os.kill({os.getpid()}, 0)\n    print('SIGNALLED')\n"
            "except PermissionError:\n    print('DENIED')")
    cmd = sandbox.command([sys.executable, "-c", code], read=[], write=[mine], protect=[tree])
    proc = subprocess.run(cmd, cwd=mine, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "DENIED", proc.stdout + proc.stderr
