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
    # same key, other bytes: the stored object is what its key says, so it stays as it is
    assert store.put(h, b"rebuilt bytes") == BundleStore.key_for(h)
    assert store.get(h) == data
    # an object that is not what its key says (planted, damaged) is never accepted
    bad = sha(b"expected")
    store._put_key(BundleStore.key_for(bad), b"planted", lambda b: True)
    with pytest.raises(StoreError) as err:
        store.put(bad, b"expected")
    assert err.value.code == "NBA312"
    assert store.get(bad) == b"planted"


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


def make_bundle(files: dict[str, bytes], derived: dict[str, bytes] | None = None
                ) -> tuple[str, bytes]:
    """A minimal valid bundle archive (manifest per nbapps.bundle) and its content hash."""
    from nbapps.bundle import content_hash

    entries = [{"path": p, "sha256": sha(d), "size": len(d), "derived": False}
               for p, d in files.items()]
    entries += [{"path": p, "sha256": sha(d), "size": len(d), "derived": True}
                for p, d in (derived or {}).items()]
    digest = content_hash(entries)
    manifest = {"schema_version": 1, "sha256": digest, "title": "T", "slug": "t",
                "notebook": "app.ipynb", "files": entries}
    return digest, make_tar({**files, **(derived or {}),
                             "manifest.json": json.dumps(manifest).encode()})


def notebook(files: list[str] | None = None, thumbnail: str | None = None) -> bytes:
    import nbformat

    from tests.nbfactory import make_notebook

    meta = {"files": files or []}
    if thumbnail:
        meta["thumbnail"] = thumbnail
    return nbformat.writes(make_notebook(meta=meta)).encode()


def test_sources_are_canonical_and_addressed_by_their_files(store, tmp_path):
    from nbapps.bundle import pack_source, source_hash

    files = {"app.ipynb": notebook(["data"]), "data/x.csv": b"1,2\n", "data/y.csv": b"3\n"}
    stored = store.put_source(files)
    assert stored.sha256 == source_hash(files)
    assert stored.key == f"sources/{stored.sha256[:2]}/{stored.sha256}.tar.gz"
    assert store.get_key(stored.key) == pack_source(files)  # canonical: same files, same bytes
    assert pack_source(dict(reversed(list(files.items())))) == pack_source(files)
    assert store.put_source(dict(files)) == stored  # again: kept, same answer
    back = store.read_source(stored.sha256)
    assert back.files == files and back.sha256 == stored.sha256 and not back.legacy
    out = store.extract_source(stored.sha256, tmp_path / "src")
    assert (tmp_path / "src" / "data" / "x.csv").read_bytes() == b"1,2\n"
    assert out.files == files
    with pytest.raises(BundleError) as err:
        store.extract_source(stored.sha256, tmp_path / "src")
    assert err.value.code == "NBA205"


def test_an_existing_source_is_kept_only_if_it_is_what_its_address_says(store):
    import gzip

    from nbapps.bundle import pack_source, source_hash

    files = {"app.ipynb": notebook(), "d.csv": b"1\n"}
    digest = source_hash(files)
    key = BundleStore.source_key(digest)
    # the same files packed by another zlib (other bytes, same files): accepted, kept as is
    other_zlib = gzip.compress(gzip.decompress(pack_source(files)), compresslevel=1, mtime=0)
    assert other_zlib != pack_source(files)
    store._put_key(key, other_zlib, lambda b: True)
    assert store.put_source(files).key == key
    assert store.get_key(key) == other_zlib
    assert store.read_source(digest).files == files
    # an object under an address whose files are something else: refused, nothing changes
    files2 = {"app.ipynb": notebook(), "d.csv": b"2\n"}
    key2 = BundleStore.source_key(source_hash(files2))
    store._put_key(key2, pack_source(files), lambda b: True)  # planted by someone else
    with pytest.raises(StoreError) as err:
        store.put_source(files2)
    assert err.value.code == "NBA312"
    with pytest.raises(BundleError) as err:
        store.read_source(source_hash(files2))
    assert err.value.code == "NBA202"
    assert store.get_key(key2) == pack_source(files)


def test_blobs_are_addressed_by_their_bytes(store):
    digest = store.put_blob(b"report")
    assert digest == sha(b"report") and store.has_blob(digest)
    assert store.get_blob(digest) == b"report"
    assert store.put_blob(b"report") == digest
    key = BundleStore.blob_key(sha(b"other"))
    store._put_key(key, b"not other", lambda b: True)  # tampered object
    with pytest.raises(StoreError):
        store.get_blob(sha(b"other"))
    with pytest.raises(StoreError):
        store.put_blob(b"other")
    with pytest.raises(NotFound):
        store.get_blob("0" * 64)


def test_keys_outside_the_store_namespaces_are_refused(store):
    for key in ("../x", "sources/ab/../../etc", "blobs/zz/" + "0" * 64, "/abs/" + "0" * 64):
        with pytest.raises(BundleError):
            store.get_key(key)


def test_legacy_archives_give_only_their_source_files(store, tmp_path):
    """A client archive of an earlier nbapps: only app.ipynb and what it declares is source;
    the executed notebook, thumbnail, manifest and extra files are never read as such."""
    from nbapps.bundle import source_hash

    files = {"app.ipynb": notebook(["x.csv"], thumbnail="thumbnail.png"), "x.csv": b"1\n"}
    digest, data = make_bundle({**files, "extra.js": b"alert(1)"},
                               derived={"executed.ipynb": b"{}", "thumbnail.png": b"PNG"})
    store.put(digest, data)
    legacy = store.read_source(digest)
    assert legacy.legacy and legacy.files == files and legacy.sha256 == source_hash(files)
    out = store.extract_source(digest, tmp_path / "legacy")
    assert out.files == files
    assert sorted(p.name for p in (tmp_path / "legacy").iterdir()) == ["app.ipynb", "x.csv"]
    # an archive without app.ipynb has no source
    no_nb = make_tar({"other.ipynb": b"{}"})
    store.put(sha(no_nb), no_nb)
    with pytest.raises(BundleError) as err:
        store.read_source(sha(no_nb))
    assert err.value.code == "NBA206"


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
