"""Bundle store over fsspec: local folder and memory://, write-once by hash, safe extraction."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
import uuid

import pytest

from nbapps.bundle import unpack_bundle
from nbapps.errors import BundleError, NotFound
from nbapps.store import BundleStore, StoreError


def make_tar(files: dict[str, bytes], *, extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    if request.param == "file":
        yield BundleStore(f"file://{tmp_path / 'bundles'}")
    else:
        url = f"memory://nbapps-test-{uuid.uuid4().hex}"
        st = BundleStore(url)
        try:
            yield st
        finally:
            st.fs.rm(st.root, recursive=True)


def test_put_get_exists_idempotent(store):
    data = make_tar({"manifest.json": b"{}", "app.ipynb": b"{}"})
    h = sha(data)
    assert not store.exists(h)
    key = store.put(h, data)
    assert key == f"{h[:2]}/{h}.nbapp" == BundleStore.key_for(h)
    assert store.exists(h) and store.get(h) == data and store.size(h) == len(data)
    assert store.put(h, data) == key  # identical again: fine, untouched
    assert store.get(h) == data


def test_never_overwrites_with_other_content(store):
    data = make_tar({"a.txt": b"one"})
    h = sha(data)
    store.put(h, data)
    # same content hash, other bytes (a rebuild: derived files differ): the stored one stays
    assert store.put(h, b"rebuilt bytes") == BundleStore.key_for(h)
    assert store.get(h) == data
    with pytest.raises(StoreError) as err:
        store.put(h, b"something else", strict=True)
    assert err.value.code == "NBA312"
    assert store.get(h) == data
    store.put(h, data, strict=True)


def test_missing_and_invalid_hash(store):
    with pytest.raises(NotFound):
        store.get("0" * 64)
    with pytest.raises(BundleError):
        store.put("../../etc/passwd", b"x")
    with pytest.raises(BundleError):
        store.exists("ABC")


def test_local_objects_are_read_only_and_no_temp_files_left(tmp_path):
    st = BundleStore(f"file://{tmp_path / 'b'}")
    data = b"payload"
    h = sha(data)
    st.put(h, data)
    path = tmp_path / "b" / h[:2] / f"{h}.nbapp"
    assert path.read_bytes() == data
    assert not os.stat(path).st_mode & 0o222
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_concurrent_identical_puts(tmp_path):
    st = BundleStore(f"file://{tmp_path / 'b'}")
    data = os.urandom(200_000)
    h = sha(data)
    errors: list[BaseException] = []

    def worker():
        try:
            st.put(h, data)
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert st.get(h) == data
    assert len(list((tmp_path / "b" / h[:2]).iterdir())) == 1


def test_default_url_is_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NBAPPS_DATA_DIR", str(tmp_path / "dd"))
    st = BundleStore()
    assert st.url == f"file://{tmp_path / 'dd' / 'bundles'}"
    assert (tmp_path / "dd" / "bundles").is_dir()


def make_bundle(files: dict[str, bytes]) -> tuple[str, bytes]:
    """A minimal valid bundle archive (manifest per nbapps.bundle) and its content hash."""
    from nbapps.bundle import content_hash

    entries = [{"path": p, "sha256": sha(d), "size": len(d), "derived": False}
               for p, d in files.items()]
    digest = content_hash(entries)
    manifest = {"schema_version": 1, "sha256": digest, "title": "T", "slug": "t",
                "notebook": "app.ipynb", "files": entries}
    return digest, make_tar({**files, "manifest.json": json.dumps(manifest).encode()})


def test_extract_verifies_the_bundle(store, tmp_path):
    files = {"app.ipynb": b"{}", "data/x.csv": b"1,2\n"}
    digest, data = make_bundle(files)
    store.put(digest, data)
    (tmp_path / "out").mkdir()  # an empty folder is fine
    out = store.extract(digest, tmp_path / "out")
    assert (out / "data" / "x.csv").read_bytes() == b"1,2\n"
    with pytest.raises(BundleError) as err:  # not empty any more
        store.extract(digest, tmp_path / "out")
    assert err.value.code == "NBA205"
    # an object whose content is not what its key says is refused and nothing is left
    other, other_data = make_bundle({"app.ipynb": b'{"x": 1}'})
    store.put(digest[::-1], other_data)
    with pytest.raises(BundleError) as err:
        store.extract(digest[::-1], tmp_path / "bad")
    assert err.value.code == "NBA202" and not (tmp_path / "bad").exists()
    # a tampered file inside the archive is caught by verification
    tampered = make_tar({"app.ipynb": b"{}", "data/x.csv": b"9,9\n",
                         "manifest.json": _manifest_of(data)})
    store.put(sha(tampered), tampered)
    with pytest.raises(BundleError) as err:
        store.extract(sha(tampered), tmp_path / "t")
    assert err.value.code == "NBA202"
    plain = make_tar({"a.txt": b"x"})
    store.put(sha(plain), plain)
    assert (store.extract(sha(plain), tmp_path / "p", verify=False) / "a.txt").exists()


def _manifest_of(archive: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.extractfile("manifest.json").read()


def _symlink(tar):
    info = tarfile.TarInfo("link")
    info.type = tarfile.SYMTYPE
    info.linkname = "/etc/passwd"
    tar.addfile(info)


def _hardlink(tar):
    info = tarfile.TarInfo("hard")
    info.type = tarfile.LNKTYPE
    info.linkname = "a.txt"
    tar.addfile(info)


@pytest.mark.parametrize("files,extra", [
    ({"../evil.txt": b"x"}, None),
    ({"/abs.txt": b"x"}, None),
    ({"a/../../evil.txt": b"x"}, None),
    ({"a.txt": b"x"}, _symlink),
    ({"a.txt": b"x"}, _hardlink),
])
def test_safe_extract_refuses_unsafe_archives(tmp_path, files, extra):
    data = make_tar(files, extra=extra)
    with pytest.raises(BundleError) as err:
        unpack_bundle(data, tmp_path / "x")
    assert err.value.code == "NBA204"
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_garbage(tmp_path):
    with pytest.raises(BundleError) as err:
        unpack_bundle(b"not a tar at all", tmp_path / "y")
    assert err.value.code == "NBA204"
