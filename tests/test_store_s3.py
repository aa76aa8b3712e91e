"""The bundle store on S3 (issue 13.2): a real S3-compatible server on loopback (moto's server
mode, :mod:`tests.s3`), s3fs, and the gallery configured with it.

What reached the server is counted from its own request log: each object is PUT exactly once,
under its final key (no temporary object, no copy, no delete), and an address that already
holds other bytes is refused, also when the object appears between the look and the PUT (S3's
conditional PUT). ``nbapps store check`` finds a missing and a corrupted object. A real gallery
process on the S3 store takes a submission, checks it and shows its review pages from what it
reads back from the bucket.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from nbapps.catalog import open_catalog
from nbapps.cli.main import main as cli_main
from nbapps.jobs.source import derive_manifest
from nbapps.store import BundleStore, StoreError, sha256_of
from nbapps.store_check import check_store
from tests.nbfactory import make_notebook
from tests.s3 import CREDENTIALS, MotoServer
from tests.server_harness import (
    Gallery,
    PNG_1x1,
    build_archive,
    new_data_dir,
    seed_version,
    start_process,
    stop_process,
    wait_checked,
)

ROOT = Path(__file__).resolve().parent.parent


def s3_store(s3: MotoServer, **kw) -> BundleStore:
    return BundleStore(s3.new_bucket_url(), **kw, **s3.storage_options())


def source_files(title: str = "S3 app") -> dict[str, bytes]:
    import nbformat

    nb = make_notebook(meta={"title": title, "description": "Stored on S3."})
    return {"app.ipynb": nbformat.writes(nb).encode(), "data.csv": b"a,b\n1,2\n"}


def requests_to(s3: MotoServer, store: BundleStore, key: str = "") -> list[tuple[str, str]]:
    """(method, path) of the logged requests to ``store``'s object ``key``, or to its bucket
    (bucket operations and every object in it)."""
    s3.mark()
    prefix = f"/{store.root}/{key}" if key else f"/{store.root.split('/')[0]}"
    return [(m, p) for m, p, _ in s3.requests() if p.startswith(prefix)]


def object_puts(store: BundleStore, seen: list[tuple[str, str]]) -> list[str]:
    return [p for m, p in seen if m == "PUT" and p.startswith(f"/{store.root}/")]


# -- the store on S3 -------------------------------------------------------------------------------

def test_round_trip_on_s3(s3, tmp_path):
    store = s3_store(s3)
    assert store.direct_put and not store._is_local()
    files = source_files()
    stored = store.put_source(files)
    assert stored.key == BundleStore.source_key(stored.sha256)
    assert store.put_source(files) == stored  # the same source again: kept, fine
    back = store.read_source(stored.sha256)
    assert back.files == files and back.key == stored.key and not back.legacy
    out = store.extract_source(stored.sha256, tmp_path / "src")
    assert (tmp_path / "src" / "data.csv").read_bytes() == b"a,b\n1,2\n" and out.files == files
    digest = store.put_blob(PNG_1x1)
    assert store.has_blob(digest) and store.get_blob(digest) == PNG_1x1
    assert store.verify_key(stored.key) == stored.size
    # a whole legacy archive under its own hash
    data = gzip.compress(b"not a tar")
    sha = sha256_of(data)
    assert store.put(sha, data) == BundleStore.key_for(sha)
    assert store.exists(sha) and store.get(sha) == data and store.size(sha) == len(data)


def test_an_address_holding_other_bytes_is_refused_on_s3(s3):
    store = s3_store(s3)
    raw = store.fs
    # a blob whose object was changed outside nbapps
    digest = sha256_of(b"report v1")
    raw.pipe_file(f"{store.root}/{BundleStore.blob_key(digest)}", b"tampered")
    with pytest.raises(StoreError) as err:
        store.put_blob(b"report v1")
    assert err.value.code == "NBA312"
    with pytest.raises(StoreError):
        store.get_blob(digest)
    assert raw.cat_file(f"{store.root}/{BundleStore.blob_key(digest)}") == b"tampered"
    # a source archive of the same files written by another gzip: same content, kept as is
    files = source_files("Other gzip")
    from nbapps.bundle import pack_source, source_hash

    sha = source_hash(files)
    other = _repacked(pack_source(files))
    assert other != pack_source(files)
    raw.pipe_file(f"{store.root}/{BundleStore.source_key(sha)}", other)
    assert store.put_source(files).sha256 == sha
    assert raw.cat_file(f"{store.root}/{BundleStore.source_key(sha)}") == other


def test_an_object_written_between_the_look_and_the_put_is_not_replaced(s3):
    """The race the look cannot close: S3's conditional PUT (If-None-Match: *) refuses to
    replace the object another writer put meanwhile; its bytes are compared instead."""
    store = s3_store(s3)
    data = b"derived bytes"
    key = BundleStore.blob_key(sha256_of(data))
    path = f"{store.root}/{key}"
    store.fs.pipe_file(path, b"written by someone else")
    with pytest.raises(StoreError):
        store._put_direct(path, data, key, lambda existing: store.matches_key(key, existing))
    assert store.fs.cat_file(path) == b"written by someone else"
    store.fs.pipe_file(path, data)  # the right bytes: accepted without a second write
    before = requests_to(s3, store, key)
    store._put_direct(path, data, key, lambda existing: store.matches_key(key, existing))
    puts = [r for r in requests_to(s3, store, key)[len(before):] if r[0] == "PUT"]
    assert len(puts) == 1  # the refused conditional PUT; nothing replaced the object


def test_each_object_is_put_once_under_its_final_key(s3):
    store = s3_store(s3)
    files = source_files("Once")
    stored = store.put_source(files)
    digest = store.put_blob(b"x" * 100_000)
    seen = requests_to(s3, store)
    puts = object_puts(store, seen)
    assert sorted(puts) == sorted([f"/{store.root}/{stored.key}",
                                   f"/{store.root}/{BundleStore.blob_key(digest)}"])
    assert not [p for m, p in seen if m in ("DELETE", "POST")]  # no temporary to remove
    assert not [p for _, p in seen if "/.tmp-" in p]
    # the same objects again: looked at, not uploaded
    store.put_source(files)
    store.put_blob(b"x" * 100_000)
    again = requests_to(s3, store)[len(seen):]
    assert not object_puts(store, again)

    # the write path used before (temporary object + move): two uploads and a delete each
    old = s3_store(s3, direct_put=False)
    old_stored = old.put_source(files)
    seen = requests_to(s3, old)
    puts = object_puts(old, seen)
    assert len(puts) == 2 and puts[-1] == f"/{old.root}/{old_stored.key}"
    assert "/.tmp-" in puts[0] and any(m == "POST" for m, _ in seen)


def test_a_server_without_conditional_puts_gets_plain_puts(monkeypatch):
    """An S3-compatible server answering 501 to If-None-Match: the store says so once in the
    log and writes after its look only (the refusal of other bytes still holds)."""
    import errno
    import uuid

    store = BundleStore(f"memory://nbapps-test-{uuid.uuid4().hex}")
    plain = store.fs.pipe_file
    calls = []

    def pipe_file(path, value, mode="overwrite", **kw):
        calls.append(mode)
        if mode == "create":
            raise OSError(errno.ENOSYS, "NotImplemented")
        return plain(path, value, **kw)

    monkeypatch.setattr(store.fs, "pipe_file", pipe_file)
    digest = store.put_blob(b"one")
    store.put_blob(b"two")
    assert calls == ["create", "overwrite", "overwrite"] and store.get_blob(digest) == b"one"
    store.fs.rm(store.root, recursive=True)


def _repacked(archive: bytes) -> bytes:
    """The same tar members in another gzip stream (other compression level and header)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=1) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# -- nbapps store check ----------------------------------------------------------------------------

def nbapps(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nbapps.cli.main", *args], text=True,
                          capture_output=True, timeout=120, cwd=cwd or ROOT,
                          env={**os.environ, **CREDENTIALS, **(env or {})})


def test_store_check_finds_missing_and_corrupted_objects(s3, tmp_path, monkeypatch,
                                                         capsys):
    data_dir, db_url, _users = new_data_dir(tmp_path)
    store = s3_store(s3)
    cat = open_catalog(db_url)
    try:
        # a source the gallery stored, with a check job's artifacts
        files = source_files("Checked")
        stored = store.put_source(files)
        sub = cat.submit(slug="checked", title="Checked", description="", tags=["t"],
                         sha256=stored.sha256, manifest=derive_manifest(files, stored),
                         store_key=stored.key, submitter="ana", size=stored.size, check=True)
        job = cat.claim_job("test-worker")
        assert job is not None and job.version_id == sub.version.id
        report_sha = store.put_blob(b'{"ok": true}')
        thumb_sha = store.put_blob(PNG_1x1)
        assert cat.finish_job(job.id, "test-worker", job.attempts, state="passed",
                              artifacts={"report": report_sha, "thumbnail": thumb_sha})
        # two legacy versions (whole archives) with thumbnails
        one = seed_version(cat, store, slug="one", submitter="ana", title="One")
        two = seed_version(cat, store, slug="two", submitter="alf", title="Two", salt="2")
        report = check_store(cat, store)
    finally:
        cat.close()
    assert report.clean and report.ok == report.objects == 5, report.to_dict()
    assert (report.versions, report.jobs) == (3, 1)

    # the store named by the environment (as for the server); the CLI in this process
    monkeypatch.setenv("NBAPPS_STORE_URL", store.url)
    monkeypatch.setenv("NBAPPS_STORE_OPTIONS", json.dumps(s3.storage_options()))
    assert cli_main(["store", "check", "--db-url", db_url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 5 object(s) named by 3 version(s) and 1 job(s)"), out

    missing = BundleStore.key_for(one.version.sha256)
    corrupt = BundleStore.key_for(two.version.sha256)
    store.fs.rm(f"{store.root}/{missing}")
    store.fs.pipe_file(f"{store.root}/{corrupt}", b"not what the address says")
    assert cli_main(["store", "check", "--db-url", db_url]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"NBA315 {missing}: missing from the store (version {one.version.id} (one v1) " \
           "source)" in lines, lines
    assert any(line.startswith(f"NBA316 {corrupt}: holds other bytes") for line in lines)
    assert lines[-1].startswith("PROBLEMS: 5 object(s)") and "3 ok, 1 missing, 1 not what" \
        in lines[-1]
    # flags win over the environment; JSON for scripts
    monkeypatch.setenv("NBAPPS_STORE_URL", "memory://elsewhere")
    assert cli_main(["store", "check", "--db-url", db_url, "--format", "json",
                     "--store-url", store.url, "--store-options",
                     json.dumps(s3.storage_options())]) == 1
    found = {f["key"]: f["code"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert found == {missing: "NBA315", corrupt: "NBA316"}
    assert cli_main(["store", "check", "--db-url", db_url, "--store-options", "[1]"]) == 1
    assert "NBA312" in capsys.readouterr().err


# -- a real gallery on the S3 store ----------------------------------------------------------------

@pytest.mark.kernel  # the gallery checks the submission (a real kernel runs it)
def test_a_gallery_on_s3_takes_checks_and_shows_a_submission(s3, tmp_path):
    data_dir, db_url, users = new_data_dir(tmp_path)
    url = s3.new_bucket_url("gallery")
    config = tmp_path / "jupyter_nbapps_config.py"
    options = {"endpoint_url": s3.endpoint,  # credentials: the AWS variables of the process
               "client_kwargs": s3.storage_options()["client_kwargs"]}
    config.write_text(f"c.NbappsServer.store_url = {url!r}\n"
                      f"c.NbappsServer.store_options = {options!r}\n")
    proc, base = start_process(data_dir, db_url, args=[f"--config={config}"], env=CREDENTIALS)
    g = Gallery(url=base, data_dir=data_dir, db_url=db_url, users=users, process=proc)
    try:
        archive = build_archive(tmp_path / "app", make_notebook(
            meta={"title": "On S3", "description": "A submission kept in a bucket."}))
        with g.client("ana") as ana:
            r = ana.post("/api/submissions", content=archive,
                         headers={"Content-Type": "application/gzip"})
        assert r.status_code == 201, r.text
        sub_id = r.json()["id"]
        done = wait_checked(g, sub_id)
        assert done["check"]["state"] == "passed", done["check"]
        source = done["manifest"]["source"]
        with g.browser("rita") as rita:
            page = rita.get(f"/submissions/{sub_id}")
            assert page.status_code == 200 and "On S3" in page.text
            notebook = rita.get(f"/submissions/{sub_id}/notebook")
            assert notebook.status_code == 200, notebook.text[:300]
            thumb = rita.get(f"/submissions/{sub_id}/thumbnail")
            assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
    finally:
        stop_process(proc)
    # everything is in the bucket, nothing in the data dir's default store
    store = BundleStore(url, **s3.storage_options())
    assert store.exists_key(source["key"])
    assert not any((data_dir / "bundles").rglob("*.tar.gz"))
    puts = [p for m, p, _ in s3.requests() if m == "PUT" and p.startswith(f"/{store.root}/")]
    assert puts.count(f"/{store.root}/{source['key']}") == 1
    assert not [p for p in puts if "/.tmp-" in p]
    # the CLI finds the store the way the server did (the config file in its folder)
    check = nbapps("store", "check", "--db-url", db_url, cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("ok: ") and "0 missing" in check.stdout
