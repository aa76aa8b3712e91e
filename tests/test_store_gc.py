"""``nbapps store gc`` (:mod:`nbapps.store_gc`): what the store holds that no catalog row names.

A real catalog (SQLite and PostgreSQL) and a real store folder hold referenced objects of every
kind (a submitted source with its check's artifacts and thumbnail, a legacy archive whose source
was stored by its first check) next to unreferenced ones (a blob, a source, a legacy archive, a
``.tmp-*`` leftover), a young unreferenced blob and a file of unknown name. Ages are set with
``os.utime``. Then the same on S3 (moto's server, :mod:`tests.s3`).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from nbapps.catalog import open_catalog
from nbapps.catalog.jobs import CheckRecord
from nbapps.cli.main import main as cli_main
from nbapps.jobs.artifacts import thumbnail_ref
from nbapps.jobs.source import derive_manifest
from nbapps.store import BundleStore, StoredObject
from nbapps.store_check import check_store
from nbapps.store_gc import GcRefused, collect_garbage
from tests.catalog_helpers import add_users
from tests.nbfactory import make_notebook
from tests.server_harness import PNG_1x1, archive_of, seed_version

HOURS_AGO = 2 * 3600


def source_files(title: str, extra: bytes = b"a,b\n1,2\n") -> dict[str, bytes]:
    import nbformat

    nb = make_notebook(meta={"title": title, "description": "Kept or collected."})
    return {"app.ipynb": nbformat.writes(nb).encode(), "data.csv": extra}


def age_all(store: BundleStore, seconds: float, *, keep_young: set[str]) -> None:
    """Set every file of a local store ``seconds`` into the past, but ``keep_young``."""
    then = time.time() - seconds
    root = Path(store.root)
    for path in root.rglob("*"):
        if path.is_file() and path.relative_to(root).as_posix() not in keep_young:
            os.utime(path, (then, then))


def seed(cat, store: BundleStore) -> tuple[set[str], dict[str, str], Callable[[], None]]:
    """Referenced objects (their keys), unreferenced ones ({kind: key}) and what finishes the
    check job of the submitted version (left running; it has stored its artifacts)."""
    add_users(cat, ana="analyst")
    referenced: set[str] = set()
    # a submission as the upload path stores it: a source, a queued check
    files = source_files("Checked")
    stored = store.put_source(files)
    sub = cat.submit(slug="checked", title="Checked", description="", tags=["t"],
                     sha256=stored.sha256, manifest=derive_manifest(files, stored),
                     store_key=stored.key, submitter="ana", size=stored.size, check=True)
    referenced.add(stored.key)
    # a legacy version whose first check stored its source: both are named
    legacy_files = source_files("Legacy", b"x\n")
    legacy_archive = archive_of(legacy_files)
    legacy_sha = hashlib.sha256(legacy_archive).hexdigest()
    legacy_key = store.put(legacy_sha, legacy_archive)
    legacy_source = store.put_source(legacy_files)
    cat.submit(slug="legacy", title="Legacy", description="", tags=["t"], sha256=legacy_sha,
               manifest=derive_manifest(legacy_files, legacy_source), store_key=legacy_key,
               submitter="ana", size=len(legacy_archive))
    referenced |= {legacy_key, legacy_source.key}
    # a seeded legacy version with its thumbnail blob
    seeded = seed_version(cat, store, slug="seeded", submitter="ana", title="Seeded")
    referenced |= {seeded.version.store_key, BundleStore.blob_key(store.put_blob(PNG_1x1))}

    # the orphan blob sorts after the other blobs (blobs/ff/...): see RacedStore
    orphan_blob = next(d for d in (f"nobody names me {i}".encode() for i in range(100000))
                       if hashlib.sha256(d).hexdigest().startswith("ff"))
    orphan_archive = archive_of({"app.ipynb": b"{}", "note": b"orphan"})
    unreferenced = {
        "blob": BundleStore.blob_key(store.put_blob(orphan_blob)),
        "source": store.put_source(source_files("Never submitted", b"y\n")).key,
        "legacy": store.put(hashlib.sha256(orphan_archive).hexdigest(), orphan_archive),
        "temporary": "blobs/ab/.tmp-crashed",
    }
    # written as the backend writes (a local folder or a bucket)
    store.fs.makedirs(f"{store.root}/blobs/ab", exist_ok=True)
    store.fs.pipe_file(f"{store.root}/{unreferenced['temporary']}", b"half a write")
    store.fs.pipe_file(f"{store.root}/README.txt", b"an operator's note")

    job = cat.claim_job("test-worker")
    assert job is not None and job.version_id == sub.version.id
    report_sha = store.put_blob(b'{"ok": true}')
    thumb_sha = store.put_blob(PNG_1x1 + b"thumbnail")
    referenced |= {BundleStore.blob_key(report_sha), BundleStore.blob_key(thumb_sha)}

    def finish_check() -> None:
        assert cat.finish_job(job.id, "test-worker", job.attempts, state="passed",
                              artifacts={"report": report_sha, "thumbnail": thumb_sha},
                              record=CheckRecord(manifest=None,
                                                 thumbnail=thumbnail_ref(thumb_sha)))

    return referenced, unreferenced, finish_check


def keys_in(store: BundleStore) -> set[str]:
    return {o.key for o in store.iter_objects()}


def gc_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(["store", "gc", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_gc_lists_then_deletes_only_old_unreferenced_objects(catalog_url, tmp_path, capsys):
    store = BundleStore(f"file://{tmp_path / 'store'}")
    cat = open_catalog(catalog_url)
    try:
        referenced, unreferenced, finish_check = seed(cat, store)
        young = BundleStore.blob_key(store.put_blob(b"stored a second ago, not recorded yet"))
        age_all(store, HOURS_AGO, keep_young={young})
        before = keys_in(store)
        assert referenced | set(unreferenced.values()) | {young, "README.txt"} <= before

        common = ["--db-url", catalog_url, "--store-url", store.url]

        # a check is running (its job claimed): deleting is refused, nothing goes
        with pytest.raises(GcRefused) as refused:
            collect_garbage(cat, store, delete=True)
        assert refused.value.code == "NBA398"
        code, out, err = gc_cli(capsys, *common, "--delete")
        assert code == 1 and "NBA398" in err and "1 job(s) are running" in err, err
        assert keys_in(store) == before

        # the check finishes (recording its artifacts and thumbnail)
        finish_check()

        # the dry run names exactly the old unreferenced objects, per kind
        report = collect_garbage(cat, store)
        assert {k: t.first for k, t in report.unreferenced.items()} == \
            {k: [v] for k, v in unreferenced.items()}, report.to_dict()
        assert (report.young, report.other, report.removed) == (1, 1, 0)
        assert report.unreferenced["temporary"].bytes == len(b"half a write")
        assert keys_in(store) == before

        code, out, _ = gc_cli(capsys, *common, "--json")
        dry = json.loads(out)
        assert code == 0 and dry["delete"] is False and dry["unreferenced_count"] == 4
        assert dry["unreferenced"]["blob"]["first"] == [unreferenced["blob"]]
        assert dry["min_age"] == 3600 and dry["deleted_count"] == 0
        code, out, _ = gc_cli(capsys, *common)
        assert code == 0 and out.startswith("dry run: 4 unreferenced object(s), ") \
            and "older than 1h" in out, out
        assert keys_in(store) == before

        code, out, _ = gc_cli(capsys, *common, "--delete", "--json")
        done = json.loads(out)
        assert code == 0 and done["complete"] and done["deleted_count"] == 4, done
        assert {k: t["first"] for k, t in done["deleted"].items()} == \
            {k: [v] for k, v in unreferenced.items()}
        assert keys_in(store) == before - set(unreferenced.values())
        assert check_store(cat, store).clean

        # nothing left but the young blob, which a smaller --min-age reaches
        code, out, _ = gc_cli(capsys, *common, "--delete")
        assert code == 0 and out.startswith("deleted 0 object(s), 0 bytes, of 0 "), out
        code, out, _ = gc_cli(capsys, *common, "--min-age", "0", "--json")
        assert json.loads(out)["unreferenced"]["blob"]["first"] == [young]
    finally:
        cat.close()


class RacedStore(BundleStore):
    """A store whose listing still shows a blob another collector deleted meanwhile, and whose
    first deletion runs ``meanwhile`` (a gallery recording a reference during a gc)."""

    gone = BundleStore.blob_key(hashlib.sha256(b"deleted by someone else").hexdigest())
    meanwhile: Callable[[], object] | None = None

    def iter_objects(self):
        yield from super().iter_objects()
        yield StoredObject(self.gone, 23, datetime.now(timezone.utc) - timedelta(hours=2))

    def remove(self, key: str) -> bool:
        removed = super().remove(key)
        if self.meanwhile is not None:
            self.meanwhile, run = None, self.meanwhile
            run()
        return removed


def test_force_re_read_references_and_a_gone_object(tmp_path):
    store = RacedStore(f"file://{tmp_path / 'store'}")
    cat = open_catalog(f"sqlite:///{tmp_path / 'nbapps.db'}")
    try:
        referenced, unreferenced, _finish = seed(cat, store)
        age_all(store, HOURS_AGO, keep_young=set())
        orphan = unreferenced.pop("blob")
        # listed as unreferenced; after the first deletion a new version names it as its
        # thumbnail: the next batch's re-read keeps it
        store.meanwhile = lambda: cat.submit(
            slug="late", title="Late", description="", tags=["t"], sha256="f" * 64,
            manifest={}, store_key=BundleStore.key_for("f" * 64), submitter="ana", size=1,
            thumbnail=thumbnail_ref(orphan.rsplit("/", 1)[1]))
        report = collect_garbage(cat, store, delete=True, force=True, batch=1)
    finally:
        cat.close()
    assert report.jobs_running == 1 and report.complete, report.to_dict()
    assert (report.already_gone, report.referenced_again) == (1, 1)
    # the running check's two artifacts are not recorded yet: --force deletes them too (so it
    # is for stopped galleries only)
    unrecorded = {k for k in referenced if k.startswith("blobs/")} - {
        BundleStore.blob_key(hashlib.sha256(PNG_1x1).hexdigest())}
    assert len(unrecorded) == 2 and report.removed == 5, report.to_dict()
    assert keys_in(BundleStore(store.url)) == \
        (referenced - unrecorded) | {orphan, "README.txt"}


def test_age_argument():
    from argparse import ArgumentTypeError

    from nbapps.cli.store_cmd import age

    assert [age(t) for t in ("90", "30m", "1h", "7d", "0", "1.5h")] == \
        [90, 1800, 3600, 7 * 86400, 0, 5400]
    for bad in ("soon", "-1h", "", "inf"):
        with pytest.raises(ArgumentTypeError):
            age(bad)


def test_deleting_stops_when_a_job_starts(tmp_path):
    store = RacedStore(f"file://{tmp_path / 'store'}")
    cat = open_catalog(f"sqlite:///{tmp_path / 'nbapps.db'}")
    try:
        _referenced, unreferenced, finish_check = seed(cat, store)
        finish_check()
        age_all(store, HOURS_AGO, keep_young=set())

        def a_job_starts() -> None:
            cat.enqueue_job("check")
            assert cat.claim_job("another-worker") is not None

        store.meanwhile = a_job_starts
        report = collect_garbage(cat, store, delete=True, batch=2)
    finally:
        cat.close()
    assert report.stopped and "1 job(s) started" in report.stopped and not report.complete
    # the first batch of two went, the rest (two, and the listed gone blob) waits
    assert (report.removed, report.already_gone) == (2, 0), report.to_dict()
    assert len(keys_in(BundleStore(store.url)) & set(unreferenced.values())) == 2


# -- on S3 (moto's server) ------------------------------------------------------------------------

def test_gc_on_s3(s3, tmp_path, capsys):
    server = s3  # the run's moto server (conftest); this test makes its own bucket
    options = server.storage_options()
    store = BundleStore(server.new_bucket_url(), **options)
    db_url = f"sqlite:///{tmp_path / 'nbapps.db'}"
    cat = open_catalog(db_url)
    try:
        referenced, unreferenced, finish_check = seed(cat, store)
        finish_check()
    finally:
        cat.close()
    before = keys_in(store)
    assert referenced | set(unreferenced.values()) | {"README.txt"} <= before
    assert all(o.modified is not None for o in store.iter_objects())
    common = ["--db-url", db_url, "--store-url", store.url, "--store-options",
              json.dumps(options), "--json"]
    # just written: young for the default age
    code, out, _ = gc_cli(capsys, *common)
    assert code == 0 and json.loads(out)["unreferenced_count"] == 0
    assert json.loads(out)["young"] == len(before)
    code, out, _ = gc_cli(capsys, *common, "--min-age", "0", "--delete")
    done = json.loads(out)
    assert code == 0 and done["complete"], done
    assert {k: t["first"] for k, t in done["deleted"].items()} == \
        {k: [v] for k, v in unreferenced.items()}
    assert keys_in(store) == before - set(unreferenced.values())
