"""nbapps.bundle: content-addressed bundles, verification, archives, atomic writes."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
from PIL import Image

from nbapps.bundle import (
    build_bundle,
    content_hash,
    pack_bundle,
    unpack_bundle,
    verify_bundle,
)
from nbapps.errors import BundleError, NbappsError, NotebookError
from nbapps.validate import ValidationSettings
from tests.nbfactory import make_notebook, write_notebook

ROOT = Path(__file__).resolve().parents[1]

# a widget cell that also displays a 1200x900 red PNG (made with Pillow, no matplotlib import)
IMAGE_WIDGET = (
    "import io\nfrom PIL import Image as P\nfrom IPython.display import Image, display\n"
    "buf = io.BytesIO()\nP.new('RGB', (1200, 900), 'red').save(buf, 'PNG')\n"
    "display(Image(buf.getvalue()))"
)


def _app(folder: Path, **kw) -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "sales.csv").write_text("region,value\nEU,3\n")
    meta = {"files": ["data/sales.csv"], "author": "Ada"}
    meta.update(kw.pop("meta", {}))
    return write_notebook(make_notebook(meta=meta, **kw), folder / "sales.ipynb")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """One bundle built from a real run (module-wide: one kernel for the read-only tests)."""
    base = tmp_path_factory.mktemp("built")
    nb_path = _app(base / "src", widget=IMAGE_WIDGET)
    return nb_path, build_bundle(nb_path, base / "out")


def _copy(info, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(info.path, dest)
    return dest


def _code(exc_info) -> str:
    return exc_info.value.code


# -- building -------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_layout_manifest_and_thumbnail(built) -> None:
    nb_path, info = built
    assert info.path.name == f"test-app-{info.sha256[:12]}"
    names = sorted(p.relative_to(info.path).as_posix() for p in info.path.rglob("*")
                   if p.is_file())
    assert names == ["app.ipynb", "data/sales.csv", "executed.ipynb", "manifest.json",
                     "thumbnail.png"]
    m = json.loads((info.path / "manifest.json").read_text())
    assert m == info.manifest and m["schema_version"] == 1 and m["sha256"] == info.sha256
    assert (m["slug"], m["title"], m["author"], m["tags"]) == ("test-app", "Test app", "Ada",
                                                              ["test"])
    assert [p["name"] for p in m["parameters"]] == ["n", "label"]
    assert m["kernel"]["name"] == "python3" and m["validation"]["ok"] is True
    assert set(m["versions"]) >= {"nbapps", "papermill", "voila", "ipywidgets"}
    assert {f["path"]: f["derived"] for f in m["files"]} == {
        "app.ipynb": False, "data/sales.csv": False, "executed.ipynb": True,
        "thumbnail.png": True}
    assert nbformat.read(info.path / "app.ipynb", as_version=4).cells[1].source.startswith("n = 3")
    with Image.open(info.path / "thumbnail.png") as thumb:  # the red output, resized
        assert thumb.size == (533, 400) and thumb.getpixel((10, 10))[:3] == (255, 0, 0)


@pytest.mark.kernel
def test_same_content_twice_gives_the_same_hash(built, tmp_path: Path) -> None:
    nb_path, first = built
    again = build_bundle(nb_path, tmp_path / "elsewhere")  # a second, separate run
    assert again.sha256 == first.sha256 and again.path.name == first.path.name
    derived = {f["path"]: f["sha256"] for f in again.manifest["files"]}
    before = {f["path"]: f["sha256"] for f in first.manifest["files"]}
    assert derived["executed.ipynb"] != before["executed.ipynb"]  # run timestamps differ
    assert derived["app.ipynb"] == before["app.ipynb"]
    # building into a folder that already has it keeps the existing bundle as it is
    kept = build_bundle(nb_path, first.path.parent)
    assert kept.path == first.path and kept.manifest["created"] == first.manifest["created"]
    # changed content, new hash
    (nb_path.parent / "data" / "sales.csv").write_text("region,value\nEU,4\n")
    try:
        changed = build_bundle(nb_path, tmp_path / "changed")
    finally:
        (nb_path.parent / "data" / "sales.csv").write_text("region,value\nEU,3\n")
    assert changed.sha256 != first.sha256


def test_refuses_a_notebook_with_errors_without_running_it(tmp_path: Path) -> None:
    nb_path = _app(tmp_path / "src", meta={"title": ""})
    with pytest.raises(NotebookError) as exc:
        build_bundle(nb_path, tmp_path / "out", settings=ValidationSettings(execute=False))
    assert exc.value.code == "NBA200"
    assert any(d["code"] == "NBA031" for d in exc.value.details)
    assert not (tmp_path / "out").exists()


def test_refuses_reserved_file_names(tmp_path: Path) -> None:
    nb_path = _app(tmp_path / "src", meta={"files": ["manifest.json"]})
    (tmp_path / "src" / "manifest.json").write_text("{}")
    from nbapps.validate import validate_notebook

    report = validate_notebook(nb_path, ValidationSettings(execute=False))
    report.executed = report.app.nb  # stands in for a run: the refusal comes before any use
    with pytest.raises(NotebookError) as exc:
        build_bundle(nb_path, tmp_path / "out", report=report)
    assert exc.value.code == "NBA200" and "reserved" in exc.value.message
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # temp build removed


@pytest.mark.kernel
def test_placeholder_thumbnail_without_images(tmp_path: Path) -> None:
    info = build_bundle(_app(tmp_path / "src"), tmp_path / "out")
    with Image.open(info.path / "thumbnail.png") as thumb:
        assert thumb.size == (640, 400)


# -- verifying ------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_verify_accepts_the_bundle(built) -> None:
    _nb, info = built
    assert verify_bundle(info.path)["sha256"] == info.sha256


@pytest.mark.kernel
@pytest.mark.parametrize("change, code", [
    ("data", "NBA202"), ("executed", "NBA202"), ("extra", "NBA202"), ("missing", "NBA202"),
    ("rehash", "NBA202"), ("symlink", "NBA204"), ("unsafe_path", "NBA204"),
    ("no_manifest", "NBA201"), ("bad_json", "NBA201"), ("schema", "NBA201"),
])
def test_verify_detects_tampering(built, tmp_path: Path, change: str, code: str) -> None:
    _nb, info = built
    root = _copy(info, tmp_path)
    mpath = root / "manifest.json"
    manifest = json.loads(mpath.read_text())
    if change == "data":
        (root / "data" / "sales.csv").write_text("region,value\nEU,999\n")
    elif change == "executed":
        (root / "executed.ipynb").write_text((root / "executed.ipynb").read_text() + " ")
    elif change == "extra":
        (root / "data" / "more.py").write_text("print('hi')")
    elif change == "missing":
        (root / "thumbnail.png").unlink()
    elif change == "rehash":  # file and its entry changed consistently, content hash not
        (root / "data" / "sales.csv").write_text("x")
        for f in manifest["files"]:
            if f["path"] == "data/sales.csv":
                f.update(size=1, sha256=__import__("hashlib").sha256(b"x").hexdigest())
        mpath.write_text(json.dumps(manifest))
    elif change == "symlink":
        (root / "data" / "link.csv").symlink_to("/etc/passwd")
    elif change == "unsafe_path":
        manifest["files"][0]["path"] = "../outside.ipynb"
        mpath.write_text(json.dumps(manifest))
    elif change == "no_manifest":
        mpath.unlink()
    elif change == "bad_json":
        mpath.write_text("{not json")
    elif change == "schema":
        manifest["schema_version"] = 99
        mpath.write_text(json.dumps(manifest))
    with pytest.raises(NbappsError) as exc:
        verify_bundle(root)
    assert _code(exc) == code, exc.value.message


def test_content_hash_is_sha256sum_of_the_source_files() -> None:
    files = [{"path": "b.csv", "sha256": "1" * 64, "derived": False},
             {"path": "app.ipynb", "sha256": "2" * 64, "derived": False},
             {"path": "executed.ipynb", "sha256": "3" * 64, "derived": True}]
    import hashlib

    expected = hashlib.sha256(f"{'2' * 64}  app.ipynb\n{'1' * 64}  b.csv\n".encode()).hexdigest()
    assert content_hash(files) == expected


# -- sources (what the gallery trusts) ------------------------------------------------------------


@pytest.mark.kernel
def test_source_archive_has_the_bundles_hash_and_only_source_files(built, tmp_path: Path) -> None:
    """``nbapps publish`` uploads the source only; a whole bundle of the same notebook reduces
    to the same files and the same hash on the gallery."""
    from nbapps.bundle import pack_notebook_source, read_source_folder, source_hash, unpack_source

    nb_path, info = built
    archive, digest = pack_notebook_source(nb_path)
    assert digest == info.sha256
    files = unpack_source(archive)
    assert sorted(files) == ["app.ipynb", "data/sales.csv"]
    assert source_hash(files) == digest
    assert pack_notebook_source(nb_path)[0] == archive  # deterministic
    unpacked = unpack_bundle(pack_bundle(info.path), tmp_path / "whole")
    (unpacked / "extra.js").write_text("alert(1)")  # not declared: never source
    assert read_source_folder(unpacked) == files


def test_read_source_folder_takes_the_notebook_and_what_it_declares(tmp_path: Path) -> None:
    from nbapps.bundle import read_source_folder

    folder = tmp_path / "up"
    (folder / "data" / "more").mkdir(parents=True)
    for name in ("data/a.csv", "data/more/b.csv", "notes.txt", "executed.ipynb",
                 "manifest.json", "thumbnail.png", "data/c.txt"):
        (folder / name).write_text(name)
    nb = make_notebook(meta={"files": ["data/*.csv", "data/more", "*.ipynb", "manifest.json"],
                             "thumbnail": "thumbnail.png"})
    write_notebook(nb, folder / "app.ipynb")
    files = read_source_folder(folder)
    # declared data files only; never the names a bundle reserves for what a run derives
    assert sorted(files) == ["app.ipynb", "data/a.csv", "data/more/b.csv"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "app.ipynb").write_text("{not json")
    (broken / "x.csv").write_text("1")
    assert sorted(read_source_folder(broken)) == ["app.ipynb"]
    with pytest.raises(BundleError) as err:
        read_source_folder(tmp_path / "nothing-here")
    assert err.value.code == "NBA206"


# -- archives -------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_pack_is_deterministic_and_unpacks_to_a_valid_bundle(built, tmp_path: Path) -> None:
    _nb, info = built
    data = pack_bundle(info.path)
    time.sleep(1.1)  # a different second: no time may leak into the archive
    assert pack_bundle(info.path) == data
    dest = unpack_bundle(data, tmp_path / "up" / "bundle", max_bytes=10 * 1024 * 1024)
    assert verify_bundle(dest)["sha256"] == info.sha256
    with pytest.raises(BundleError) as exc:
        unpack_bundle(data, dest)
    assert _code(exc) == "NBA205"
    with pytest.raises(NbappsError) as exc:
        unpack_bundle(data, tmp_path / "small", max_bytes=1000)
    assert _code(exc) == "NBA203" and not (tmp_path / "small").exists()


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info)
    return raw.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("members", [
    [(_member("../evil.txt"), b"x")],
    [(_member("/etc/evil.txt"), b"x")],
    [(_member("a/../../evil.txt"), b"x")],
    [(_member("link", tarfile.SYMTYPE, "/etc/passwd"), None)],
    [(_member("hard", tarfile.LNKTYPE, "manifest.json"), None)],
    [(_member("fifo", tarfile.FIFOTYPE), None)],
    [(_member("a.txt"), b"1"), (_member("a.txt"), b"2")],
], ids=["dotdot", "absolute", "nested-dotdot", "symlink", "hardlink", "fifo", "duplicate"])
def test_unpack_refuses_unsafe_archives(tmp_path: Path, members) -> None:
    with pytest.raises(BundleError) as exc:
        unpack_bundle(_tar(members), tmp_path / "dest")
    assert _code(exc) == "NBA204"
    assert not (tmp_path / "dest").exists() and not (tmp_path / "evil.txt").exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too


def test_unpack_refuses_garbage_and_compression_bombs(tmp_path: Path) -> None:
    with pytest.raises(BundleError) as exc:
        unpack_bundle(b"this is not an archive", tmp_path / "g")
    assert _code(exc) == "NBA204"
    bomb = _tar([(_member("zeros.bin"), bytes(20 * 1024 * 1024))])
    assert len(bomb) < 100_000
    with pytest.raises(NbappsError) as exc:
        unpack_bundle(bomb, tmp_path / "b", max_bytes=5 * 1024 * 1024)
    assert _code(exc) == "NBA203"


# -- atomic writes --------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import os, signal, sys
    import nbapps.bundle as bundle
    if sys.argv[3] == "before-rename":
        bundle._install = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    bundle.build_bundle(sys.argv[1], sys.argv[2])
""")


def _start_child(nb_path: Path, out: Path, mode: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CHILD, str(nb_path), str(out), mode],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _bundles(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if not p.name.startswith(".")] if out.exists() else []


@pytest.mark.kernel
def test_sigkill_mid_build_never_leaves_a_partial_bundle(tmp_path: Path) -> None:
    nb_path = _app(tmp_path / "src", meta={"files": ["data"]})
    (tmp_path / "src" / "data" / "big.bin").write_bytes(os.urandom(64 * 1024 * 1024))
    out = tmp_path / "out"

    # 1. killed from outside as soon as the build's temporary folder appears
    child = _start_child(nb_path, out, "external")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and child.poll() is None:
            if out.exists() and any(p.name.startswith(".nbapps-bundle-") for p in out.iterdir()):
                child.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, "the build ended before it could be killed"
    assert _bundles(out) == []

    # 2. killed at the worst moment: everything written, not yet renamed
    child = _start_child(nb_path, out, "before-rename")
    child.wait(60)
    assert child.returncode == -signal.SIGKILL
    assert _bundles(out) == []
    leftovers = [p for p in out.iterdir() if p.name.startswith(".nbapps-bundle-")]
    assert any((p / "manifest.json").exists() for p in leftovers)  # complete, but hidden

    # a build after the crashes completes and is valid
    info = build_bundle(nb_path, out)
    assert _bundles(out) == [info.path] and verify_bundle(info.path)["sha256"] == info.sha256
