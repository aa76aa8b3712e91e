"""The app runners' Landlock sandbox (nbapps.sandbox): what confined code can open."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
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


def test_the_gallerys_own_working_folder_is_not_given_to_apps(tmp_path: Path, monkeypatch):
    """Only the folders the runner's interpreter imports from are readable, not a folder that
    is on the gallery's ``sys.path`` only (``python -m`` run from /srv, say)."""
    data = tmp_path / "srv" / "data"
    (data / "runtime" / "share").mkdir(parents=True)
    (tmp_path / "srv" / "notes.txt").write_text("private")
    monkeypatch.syspath_prepend(str(tmp_path / "srv"))
    cmd = sandbox.command(["true"], read=[data / "runtime" / "share"],
                          write=[data / "runtime" / "runners" / "x"], protect=[data])
    reads = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--read"]
    assert not [r for r in reads if r.startswith(str(tmp_path / "srv")) and "data" not in r]
    assert str(data / "runtime" / "share") in reads  # asked for explicitly: kept
    assert sys.prefix in reads and "/usr" in reads
    assert str(ROOT) in reads  # the editable install's source (on the interpreter's path)


# -- protected paths nested in allowed folders (issue 11: `make demo`'s data dir) -------------

ROOT = Path(__file__).resolve().parents[1]

#: prints "<module> IMPORTED|IMPORT-FAILED" for argv[1] (comma-separated), then
#: "<path> READ|DENIED|MISSING" for each further argument ("w:<path>": write it first)
PROBE_IMPORT = """
import importlib, json, sys
out = {}
for name in sys.argv[1].split(","):
    try:
        importlib.import_module(name)
        out[name] = "IMPORTED"
    except ImportError:
        out[name] = "IMPORT-FAILED"
for path in sys.argv[2:]:
    try:
        if path.startswith("w:"):
            path = path[2:]
            with open(path, "w") as f:
                f.write("written")
        with open(path) as f:
            f.read()
        out[path] = "READ"
    except PermissionError:
        out[path] = "DENIED"
    except FileNotFoundError:
        out[path] = "MISSING"
print(json.dumps(out))
"""


def run_confined(modules: str, *paths: Path | str, read=(), write=(), protect=(),
                 python: str | None = None, cwd: Path) -> dict[str, str]:
    cmd = sandbox.command([python or sys.executable, "-c", PROBE_IMPORT, modules,
                           *map(str, paths)], read=read, write=write, protect=protect,
                          python=python)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@needs_landlock
def test_data_dir_inside_the_source_tree(tmp_path: Path):
    """`make demo`: the data dir is in the checkout, which is on sys.path through the editable
    install. App code still imports nbapps (and reads the checkout) but not the data dir."""
    data = Path(tempfile.mkdtemp(prefix=".pytest-sandbox-", dir=ROOT))
    try:
        (data / "cookie_secret").write_text("top-secret")
        (data / "bundles").mkdir()
        (data / "bundles" / "other.tar.gz").write_text("another app")
        mine = data / "runtime" / "runners" / "mine"
        mine.mkdir(parents=True)
        out = run_confined("nbapps,nbapps.sandbox",
                           data / "cookie_secret", data / "bundles" / "other.tar.gz",
                           ROOT / "pyproject.toml", "w:" + str(mine / "scratch.txt"),
                           "w:" + str(data / "planted.txt"),
                           write=[mine], protect=[data], cwd=mine)
    finally:
        shutil.rmtree(data)
    assert out["nbapps"] == "IMPORTED" and out["nbapps.sandbox"] == "IMPORTED"
    assert out[str(data / "cookie_secret")] == "DENIED"
    assert out[str(data / "bundles" / "other.tar.gz")] == "DENIED"
    assert out[str(ROOT / "pyproject.toml")] == "READ"
    assert out[str(mine / "scratch.txt")] == "READ"
    assert out[str(data / "planted.txt")] == "DENIED"


@needs_landlock
def test_source_tree_inside_the_data_dir(tmp_path: Path):
    """The other nesting: the interpreter (a venv) and the app's source tree live inside the
    protected folder; they are what the runner needs, the rest of the folder is not."""
    data = tmp_path / "data"
    src = data / "src"
    (src / "pkgx").mkdir(parents=True)
    (src / "pkgx" / "__init__.py").write_text("VALUE = 1\n")
    (data / "cookie_secret").write_text("top-secret")
    venv = data / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()
    # like an editable install of both: this checkout (for the launcher) and the app source
    Path(site, "_editable.pth").write_text(f"{ROOT}\n{src}\n")
    mine = data / "runtime" / "mine"
    mine.mkdir(parents=True)
    out = run_confined("pkgx", data / "cookie_secret", src / "pkgx" / "__init__.py",
                       write=[mine], protect=[data], python=python, cwd=mine)
    assert out["pkgx"] == "IMPORTED"
    assert out[str(src / "pkgx" / "__init__.py")] == "READ"
    assert out[str(data / "cookie_secret")] == "DENIED"


@needs_landlock
def test_protected_files_inside_an_allowed_folder(tmp_path: Path, monkeypatch):
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    for rel in ("a.txt", "secret.txt", "sub/b.txt", "sub/deeper/c.txt", "sub/deeper/key.pem"):
        (tree / rel).write_text(rel)
    # the gallery's configuration file in its working folder: protected without being named
    monkeypatch.chdir(tree)
    (tree / "jupyter_nbapps_config.py").write_text("c.NbappsServer.db_url = 'postgresql://pw'")
    (tree / "jupyter_nbapps_config.json").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    files = ["a.txt", "secret.txt", "sub/b.txt", "sub/deeper/c.txt", "sub/deeper/key.pem",
             "jupyter_nbapps_config.py", "jupyter_nbapps_config.json"]
    out = run_confined("json", *(tree / f for f in files), read=[tree], write=[mine],
                       protect=[tree / "secret.txt", tree / "sub" / "deeper" / "key.pem"],
                       cwd=mine)
    verdicts = {f: out[str(tree / f)] for f in files}
    assert verdicts == {"a.txt": "READ", "secret.txt": "DENIED", "sub/b.txt": "READ",
                        "sub/deeper/c.txt": "READ", "sub/deeper/key.pem": "DENIED",
                        "jupyter_nbapps_config.py": "DENIED",
                        "jupyter_nbapps_config.json": "DENIED"}


@needs_landlock
def test_symlinks_and_hard_links_do_not_open_protected_paths(tmp_path: Path):
    tree = tmp_path / "tree"
    data = tree / "data"
    data.mkdir(parents=True)
    (data / "cookie_secret").write_text("top-secret")
    (tree / "readme.txt").write_text("hello")
    (tree / "to-data").symlink_to(data)                       # a link to the protected folder
    (tree / "to-secret").symlink_to(data / "cookie_secret")   # ... and to a file in it
    (tree / "to-readme").symlink_to(tree / "readme.txt")      # an allowed target
    os.link(data / "cookie_secret", tree / "hardlink")        # the same file under a new name
    outside = tmp_path / "outside.txt"
    outside.write_text("not given")
    (tree / "to-outside").symlink_to(outside)                 # a target that was never allowed
    alias = tmp_path / "alias"
    alias.symlink_to(tree)                                    # the allowed folder via a link
    mine = tmp_path / "mine"
    mine.mkdir()
    probes = [tree / "to-data" / "cookie_secret", tree / "to-secret", tree / "to-readme",
              tree / "hardlink", tree / "to-outside", alias / "readme.txt",
              alias / "data" / "cookie_secret"]
    # protect named through a link too: the real folder is what is protected
    link_to_data = tmp_path / "data-link"
    link_to_data.symlink_to(data)
    out = run_confined("json", *probes, read=[alias], write=[mine], protect=[link_to_data],
                       cwd=mine)
    assert out[str(tree / "to-data" / "cookie_secret")] == "DENIED"
    assert out[str(tree / "to-secret")] == "DENIED"
    assert out[str(tree / "hardlink")] == "DENIED"
    assert out[str(tree / "to-outside")] == "DENIED"
    assert out[str(alias / "data" / "cookie_secret")] == "DENIED"
    assert out[str(tree / "to-readme")] == "READ"
    assert out[str(alias / "readme.txt")] == "READ"


def test_plan_splits_only_what_leads_to_a_protected_path(tmp_path: Path):
    top = tmp_path / "top"
    for rel in ("a/x.txt", "b/c/secret/s.txt", "b/c/d.txt", "b/e.txt"):
        (top / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / rel).write_text(rel)
    rules = sandbox.plan(read=[top], write=[top / "b" / "c" / "secret" / "run"],
                         protect=[top / "b" / "c" / "secret"])
    mine = [r for r in rules.read if r.startswith(str(top))]
    assert sorted(mine) == sorted(str(top / p) for p in ("a", "b/c/d.txt", "b/e.txt"))
    assert rules.write[-1] == str(top / "b" / "c" / "secret" / "run")  # more specific: kept
    assert not [r for r in rules.listable if r.startswith(str(top))]  # not an import folder
    # the launcher's arguments carry every rule
    args = rules.args()
    assert args.count("--read") == len(rules.read) and args.count("--write") == len(rules.write)


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
