"""The gallery derives everything from the source it stores (issue 10, DESIGN.md decision 7).

Real galleries (threads and processes), real kernels, Landlock: crafted uploads whose executed
notebook, manifest, thumbnail or extra files disagree with their source change nothing that a
reviewer or a viewer sees; a second upload of an existing hash cannot change the stored object;
failing checks cannot be approved; the check is confined; a check past its deadline is killed
with its whole process tree; the queue gives places, survives a killed gallery, and checks the
versions an earlier nbapps stored.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import tarfile
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell

from nbapps import sandbox
from nbapps.bundle import content_hash, pack_source, unpack_source
from nbapps.jobs import artifacts
from nbapps.runner.wiring import _extract
from tests.nbfactory import make_notebook
from tests.server_harness import (
    PNG_1x1,
    catalog_of,
    seed_users,
    start_process,
    stop_process,
    thread_gallery,
    wait_checked,
)

pytestmark = pytest.mark.kernel

JS_CELL = ("from IPython.display import Javascript, display\n"
           "print('SOURCE-RAN')\n"
           "display(Javascript('window.parent.pwned = 1'))")
#: another PNG than the placeholder a check makes (a 2x2 image)
FAKE_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000002000000020806000000f278d4fa"
    "0000001149444154789c63f8cfc0f09f81e1ff7f0019fb03fdb4b1d2e90000000049454e44ae426082")


def attack_notebook() -> nbformat.NotebookNode:
    """The source that will run: one more `widget` cell, with a JavaScript output."""
    nb = make_notebook(meta={"title": "Real title", "description": "What runs."})
    nb.cells.append(new_code_cell(JS_CELL, metadata={"tags": ["widget"]}))
    return nb


def crafted_bundle(nb: nbformat.NotebookNode, *, marker: str, title: str = "Harmless") -> bytes:
    """A whole bundle whose derived files lie about ``nb``: a harmless executed notebook, a fake
    thumbnail, an extra file, a manifest with another title, contract and a clean report. All
    hashes are consistent, so the bundle verifies."""
    harmless = make_notebook(meta={"title": title})
    harmless.cells[-1].outputs = [nbformat.v4.new_output("stream", text=marker)]
    files = {"app.ipynb": nbformat.writes(nb).encode(),
             "executed.ipynb": nbformat.writes(harmless).encode(),
             "thumbnail.png": FAKE_PNG,
             "evil.svg": b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"}
    entries = [{"path": k, "sha256": hashlib.sha256(v).hexdigest(), "size": len(v),
                "derived": k != "app.ipynb"} for k, v in sorted(files.items())]
    manifest = {"schema_version": 1, "sha256": content_hash(entries), "title": title,
                "slug": "harmless", "notebook": "app.ipynb", "executed": "executed.ipynb",
                "thumbnail": "thumbnail.png", "files": entries, "description": "fake",
                "tags": ["fake"], "parameters": [{"name": "evil", "type": "int", "default": 1}],
                "validation": {"ok": True, "errors": 0, "warnings": 0, "findings": [],
                               "claim": marker}}
    files["manifest.json"] = json.dumps(manifest).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def upload(g, who: str, data: bytes, **params) -> dict:
    with g.client(who) as c:
        r = c.post("/api/submissions", content=data, params=params,
                   headers={"Content-Type": "application/gzip"})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def check_job(g, version_id: int):
    with catalog_of(g) as (cat, store):
        return cat.latest_job(version_id), store


def executed_text(g, version_id: int) -> tuple[str, nbformat.NotebookNode]:
    job, store = check_job(g, version_id)
    nb = artifacts.load_notebook(store, job.artifacts[artifacts.EXECUTED])
    return nbformat.writes(nb), nb


def check_processes(data_dir: Path) -> list[psutil.Process]:
    """Processes working in the gallery's check folders (checks, their kernels and children)."""
    from nbapps.jobs.worker import CheckSettings

    settings = CheckSettings(data_dir=data_dir)
    roots = [str(settings.folder.resolve()), *[str(t) for t in settings.temp_folders()]]
    found = []
    for proc in psutil.process_iter(["cwd"]):
        cwd = proc.info.get("cwd") or ""
        if any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
            found.append(proc)
    return found


def wait_no_check_processes(data_dir: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while check_processes(data_dir):
        assert time.monotonic() < deadline, check_processes(data_dir)
        time.sleep(0.2)


# -- what reviewers and viewers see comes from the source ------------------------------------------

def test_a_crafted_upload_changes_nothing_anyone_sees(tmp_path):
    nb = attack_notebook()
    with thread_gallery(tmp_path) as g:
        sub = upload(g, "ana", crafted_bundle(nb, marker="FAKE-EXECUTED"))
        assert sub["state"] == "validating" and sub["check"]["state"] in ("queued", "running")
        done = wait_checked(g, sub["id"])
        assert done["state"] == "submitted" and done["check"]["state"] == "passed", \
            done["check"]["findings"][0]["message"]
        manifest = done["manifest"]
        # title, description, tags and contract come from the notebook, not the client
        assert done["title"] == manifest["title"] == "Real title"
        assert done["tags"] == ["test"] and done["description"] == "What runs."
        assert [p["name"] for p in manifest["parameters"]] == ["n", "label"]
        assert [f["path"] for f in manifest["files"]] == ["app.ipynb"]
        # the client's report is kept only as its claim
        assert manifest["client_claim"]["validation"]["claim"] == "FAKE-EXECUTED"
        assert "validation" not in manifest
        # the report and timings are the gallery's own run of the source, JS cell included
        runs = done["check"]["runs"]
        assert runs[0]["label"] == "default" and runs[0]["ok"]
        lines = [c["first_line"] for c in runs[0]["cells"]]
        assert lines[-1] == "from IPython.display import Javascript, display"
        assert runs[0]["cells"][-1]["cell"] == len(nb.cells)  # 1-based, as JupyterLab
        # the executed notebook is the gallery's, with the widget state its run saved
        text, executed = executed_text(g, sub["id"])
        assert "SOURCE-RAN" in text and "application/javascript" in text
        assert "FAKE-EXECUTED" not in text
        state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
        assert any(m["model_name"] == "IntSliderModel" for m in state["state"].values())
        # the thumbnail is the one the check made, never the uploaded one
        with g.client("rita") as rita:
            thumb = rita.get(f"/submissions/{sub['id']}/thumbnail")
            assert thumb.status_code == 200 and thumb.content.startswith(b"\x89PNG")
            assert thumb.content not in (FAKE_PNG, PNG_1x1)
            report = rita.get(f"/api/submissions/{sub['id']}").json()
            assert report["check"] == done["check"]
        # what is stored, and what a runner serves, is the source and only the source
        job, _ = check_job(g, sub["id"])
        assert job.result["confined"] is sandbox.available()
        assert hashlib.sha256(thumb.content).hexdigest() == job.artifacts["thumbnail"]
        with catalog_of(g) as (cat, store):
            version = cat.get_version(sub["id"])
            source = store.read_source(version.sha256)
            assert source.files == {"app.ipynb": nbformat.writes(nb).encode()}
            folder = _extract(store, version, tmp_path / "runtime")
        assert sorted(p.name for p in folder.iterdir()) == ["app.ipynb", "manifest.json"]
        assert (folder / "app.ipynb").read_bytes() == nbformat.writes(nb).encode()
        served = json.loads((folder / "manifest.json").read_text())
        assert [p["name"] for p in served["parameters"]] == ["n", "label"]
        # and a viewer of the approved app sees the same
        with g.client("rita") as rita:
            r = rita.post(f"/api/submissions/{sub['id']}/decision",
                          json={"decision": "approve", "comment": "ok"})
            assert r.status_code == 200, r.text
        with g.client("vic") as vic:
            app = vic.get(f"/api/apps/{sub['app']}").json()
            assert app["title"] == "Real title"
            assert [p["name"] for p in app["parameters"]] == ["n", "label"]
            assert vic.get(f"/app/{sub['app']}/thumbnail").content == thumb.content


def test_a_second_upload_of_a_stored_hash_cannot_change_what_others_get(tmp_path):
    nb = attack_notebook()
    with thread_gallery(tmp_path) as g:
        first = upload(g, "ana", crafted_bundle(nb, marker="ANA-FAKE"))
        wait_checked(g, first["id"])
        with catalog_of(g) as (cat, store):
            key = cat.get_version(first["id"]).store_key
            stored = store.get_key(key)
        _, ana_exec = executed_text(g, first["id"])
        # another analyst, the same source, other "derived" files: his own app, same hash
        second = upload(g, "alf", crafted_bundle(nb, marker="ALF-FAKE", title="Alf's title"),
                        slug="alf-copy")
        assert second["sha256"] == first["sha256"] and second["id"] != first["id"]
        done = wait_checked(g, second["id"])
        assert done["check"]["state"] == "passed" and done["title"] == "Real title"
        with catalog_of(g) as (cat, store):
            assert store.get_key(key) == stored  # the stored object did not change
            assert cat.get_version(second["id"]).store_key == key
            ana_version = cat.get_version(first["id"])
        text, _ = executed_text(g, second["id"])
        assert "SOURCE-RAN" in text and "ALF-FAKE" not in text and "ANA-FAKE" not in text
        ana_text, _ = executed_text(g, first["id"])
        assert "ALF-FAKE" not in ana_text
        assert ana_version.manifest["client_claim"]["validation"]["claim"] == "ANA-FAKE"
        # the source archive `nbapps publish` sends gives the same version
        again = upload(g, "ana", pack_source(unpack_source(stored)))
        assert again["id"] == first["id"] and again["created"] is False


def test_a_failing_check_cannot_be_approved_and_can_be_queued_again(tmp_path):
    nb = make_notebook(meta={"title": "Breaks"}, extra=["raise KeyError('region')"])
    with thread_gallery(tmp_path) as g:
        sub = upload(g, "ana", pack_source({"app.ipynb": nbformat.writes(nb).encode()}))
        done = wait_checked(g, sub["id"])
        assert done["state"] == "failed" and done["check"]["state"] == "failed"
        errors = [f for f in done["check"]["findings"] if f["severity"] == "error"]
        assert errors[0]["code"] == "NBA070" and errors[0]["cell"] == 3
        assert "KeyError" in errors[0]["message"]
        with g.client("rita") as rita:
            r = rita.post(f"/api/submissions/{sub['id']}/decision",
                          json={"decision": "approve", "comment": "ok"})
            assert r.status_code == 409 and r.json()["error"] == "NBA320"
        with g.client("ana") as ana:  # analysts do not re-queue checks
            assert ana.post(f"/api/submissions/{sub['id']}/check", json={}).status_code == 403
        with g.client("adam") as adam:
            r = adam.post(f"/api/submissions/{sub['id']}/check", json={})
            assert r.status_code == 202, r.text
            assert r.json()["state"] == "validating"
            assert r.json()["check"]["state"] in ("queued", "running")
            busy = adam.post(f"/api/submissions/{sub['id']}/check", json={})
            assert busy.status_code == 409 and busy.json()["error"] == "NBA305"
        again = wait_checked(g, sub["id"])
        assert again["state"] == "failed"
        with g.client("rita") as rita:
            r = rita.post(f"/api/submissions/{sub['id']}/decision",
                          json={"decision": "reject", "comment": "cell 3 fails"})
            assert r.status_code == 200 and r.json()["state"] == "rejected"


# -- confinement -----------------------------------------------------------------------------------

@pytest.mark.skipif(not sandbox.available(), reason="Landlock is not available here")
def test_the_check_is_confined(tmp_path, monkeypatch):
    monkeypatch.setenv("NBAPPS_CHECK_CANARY", "secret-of-the-gallery")
    data_dir = tmp_path / "data"
    nb = make_notebook(meta={"title": "Nosy"}, extra=[
        "import os\nprint('canary', os.environ.get('NBAPPS_CHECK_CANARY'))",
        # the notebook may not forge its own check: write the check's report, or kill it
        "import os, signal\n"
        "def attempt(what, fn):\n"
        "    try:\n        fn()\n        print(what, 'DONE')\n"
        "    except OSError as exc:\n        print(what, 'denied', type(exc).__name__)\n"
        "check = os.getppid()\n"
        "attempt('forge', lambda: open(f'/proc/{check}/cwd/out/report.json', 'w').write('{}'))\n"
        "attempt('kill', lambda: os.kill(check, signal.SIGKILL))",
        f"secret = open({str(data_dir / 'cookie_secret')!r}).read()",
    ])
    with thread_gallery(tmp_path) as g:
        assert (g.data_dir / "cookie_secret").is_file()
        sub = upload(g, "ana", pack_source({"app.ipynb": nbformat.writes(nb).encode()}))
        done = wait_checked(g, sub["id"])
        assert done["state"] == "failed"
        error = [f for f in done["check"]["findings"] if f["severity"] == "error"][0]
        assert error["code"] == "NBA070" and "PermissionError" in error["message"]
        assert error["cell"] == 5
        text, _ = executed_text(g, sub["id"])
        assert "canary None" in text and "secret-of-the-gallery" not in text
        assert "forge denied PermissionError" in text
        if sandbox.abi_version() >= 6:  # signals out of the kernel's own layer are refused
            assert "kill denied PermissionError" in text
        job, _ = check_job(g, sub["id"])
        assert job.result["confined"] is True


# -- deadlines and the process tree ----------------------------------------------------------------

def test_a_check_past_its_deadline_is_killed_with_its_whole_tree(tmp_path):
    """The worker's own deadline (the backstop behind papermill's timeouts): the check, its
    kernel and what the notebook started are all gone, and the check fails with NBA323."""
    import threading

    from nbapps.catalog import open_catalog
    from nbapps.jobs.source import derive_manifest
    from nbapps.jobs.worker import CheckRun, CheckSettings
    from nbapps.store import open_store

    data_dir = tmp_path / "data"
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    seed_users(db_url)
    marker = str(int(time.time() * 1e6))[-6:]  # sleep 600.<marker>: a number, findable
    nb = make_notebook(meta={"title": "Hangs"}, extra=[
        "import subprocess, time\n"
        f"child = subprocess.Popen(['sleep', '600.{marker}'])\n"
        "open('started', 'w').close()\n"
        "time.sleep(600)"])
    cat = open_catalog(db_url)
    try:
        store = open_store(None, data_dir)
        files = {"app.ipynb": nbformat.writes(nb).encode()}
        stored = store.put_source(files)
        version = cat.submit(slug="hangs", title="Hangs", description="", tags=(),
                             sha256=stored.sha256, manifest=derive_manifest(files, stored),
                             store_key=stored.key, submitter="ana", check=True).version
        job = cat.claim_job("test/1/1")
        # the inner timeouts (cell, total) are far away; the worker's deadline comes first
        settings = CheckSettings(data_dir=data_dir, cell_timeout=600, total_timeout=600,
                                 kill_grace=-580)  # deadline: 20 s
        run = CheckRun(settings, store, job, version, keep_claim=lambda: True,
                       stopping=threading.Event())
        seen: list[int] = []
        done = threading.Event()

        def sleepers() -> list[psutil.Process]:
            return [p for p in psutil.process_iter(["cmdline"])
                    if f"600.{marker}" in " ".join(p.info.get("cmdline") or [])]

        def watch() -> None:  # the notebook's own child, a grandchild of the check
            while not done.is_set() and not seen:
                seen.extend(p.pid for p in sleepers())
                done.wait(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()
        try:
            outcome = run.run()
        finally:
            done.set()
            watcher.join(10)
        assert time.monotonic() - started < 90
        assert outcome.state == "failed"
        assert outcome.result["findings"][0]["code"] == "NBA323"
        assert seen, "the notebook's child process never started before the deadline"
        assert sleepers() == []
        wait_no_check_processes(data_dir, timeout=10)
        assert not (data_dir / "checks" / f"{job.id}-{job.attempts}").exists()
    finally:
        cat.close()


# -- the queue -------------------------------------------------------------------------------------

def test_queue_positions_with_one_worker(tmp_path):
    slow = make_notebook(meta={"title": "Slow one"}, extra=["import time\ntime.sleep(8)"])
    quick = [make_notebook(meta={"title": f"Quick {i}"}) for i in range(2)]
    with thread_gallery(tmp_path, args=["--NbappsServer.check_workers=1"]) as g:
        ids = [upload(g, "ana", pack_source({"app.ipynb": nbformat.writes(nb).encode()}))["id"]
               for nb in [slow, *quick]]
        deadline = time.monotonic() + 60
        with g.client("ana") as c:
            while True:
                first = c.get(f"/api/submissions/{ids[0]}/check").json()
                if first["state"] == "running":
                    break
                assert time.monotonic() < deadline, first
                time.sleep(0.1)
            waiting = [c.get(f"/api/submissions/{i}").json()["check"] for i in ids[1:]]
            listed = {s["id"]: s["check"] for s in c.get("/api/submissions").json()["items"]}
        assert [(w["state"], w["queue_position"]) for w in waiting] == \
            [("queued", 1), ("queued", 2)]
        assert listed[ids[2]]["queue_position"] == 2
        assert first["queue_position"] is None and first["started_at"]
        for i in ids:
            assert wait_checked(g, i)["state"] == "submitted"


def test_a_gallery_killed_mid_check_runs_it_again_after_restart(tmp_path):
    data_dir = tmp_path / "data"
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    users = seed_users(db_url)
    nb = make_notebook(meta={"title": "Long check"}, extra=["import time\ntime.sleep(6)"])
    auth = {"Authorization": f"Bearer {users['ana'].token}"}
    import httpx

    proc, url = start_process(data_dir, db_url, ["--NbappsServer.check_workers=1"])
    try:
        r = httpx.post(f"{url}/api/submissions", headers=auth, timeout=60,
                       content=pack_source({"app.ipynb": nbformat.writes(nb).encode()}))
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/api/submissions/{vid}/check", headers=auth,
                        timeout=30).json()["state"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        while not check_processes(data_dir):  # claimed: its process starts in a moment
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        stop_process(proc, signal.SIGKILL)
    # the check dies with its gallery (nothing runs twice at once), its job waits
    wait_no_check_processes(data_dir, timeout=30)
    proc, url = start_process(data_dir, db_url, ["--NbappsServer.check_workers=1"])
    try:
        deadline = time.monotonic() + 240
        while True:
            sub = httpx.get(f"{url}/api/submissions/{vid}", headers=auth, timeout=30).json()
            if sub["check"]["state"] in ("passed", "failed", "error"):
                break
            assert time.monotonic() < deadline, sub
            time.sleep(0.2)
        assert sub["state"] == "submitted" and sub["check"]["state"] == "passed"
    finally:
        stop_process(proc)
    from nbapps.catalog import open_catalog

    cat = open_catalog(db_url)
    try:
        jobs = cat.list_jobs(version_id=vid)
        assert len(jobs) == 1 and jobs[0].attempts == 2 and jobs[0].state == "passed"
    finally:
        cat.close()
    wait_no_check_processes(data_dir, timeout=10)


# -- versions stored by an earlier nbapps ----------------------------------------------------------

def test_legacy_versions_are_checked_and_use_only_their_source(tmp_path):
    """Versions stored from client archives before migration 0002: at start the gallery checks
    them; pages and runners use only app.ipynb and what it declares."""
    from nbapps.catalog import open_catalog
    from nbapps.store import open_store

    migration = migration_0002()
    data_dir = tmp_path / "data"
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    users = seed_users(db_url)
    nb = attack_notebook()
    nb.metadata["nbapps"]["files"] = ["rates.csv"]
    archive = crafted_bundle(nb, marker="LEGACY-FAKE")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # add a declared data file
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members["rates.csv"] = b"rate\n0.5\n"
    client_manifest = json.loads(members["manifest.json"])
    client_manifest["files"].append({"path": "rates.csv", "derived": False, "size": 9,
                                     "sha256": hashlib.sha256(b"rate\n0.5\n").hexdigest()})
    client_manifest["sha256"] = content_hash(client_manifest["files"])
    members["manifest.json"] = json.dumps(client_manifest).encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    sha = client_manifest["sha256"]
    cat = open_catalog(db_url)
    try:
        store = open_store(None, data_dir)
        key = store.put(sha, raw.getvalue())
        waiting = cat.submit(slug="legacy-sub", title="Harmless", description="fake",
                             tags=("fake",), sha256=sha, store_key=key, submitter="ana",
                             manifest=migration.legacy_manifest(client_manifest)).version
        live = cat.submit(slug="legacy-live", title="Harmless", description="fake",
                          tags=("fake",), sha256=sha, store_key=key, submitter="alf",
                          manifest=migration.legacy_manifest(client_manifest)).version
        cat.decide(live.id, "rita", "approve", "approved long ago")
    finally:
        cat.close()
    with thread_gallery(tmp_path, db_url, users=False) as g:
        g.users = users
        with g.client("vic") as c:  # before or after its check: nothing of the client's
            early = c.get("/api/apps/legacy-live").json()
            assert "evil" not in [p["name"] for p in early["parameters"]]
            assert c.get("/app/legacy-live/thumbnail").content != FAKE_PNG
        done = wait_checked(g, waiting.id)
        assert done["state"] == "submitted" and done["check"]["state"] == "passed"
        live_done = wait_checked(g, live.id)
        assert live_done["state"] == "approved"  # a live version stays live
        # its title, description and tags are the notebook's now (they were the client's)
        assert (live_done["title"], live_done["description"], live_done["tags"]) == \
            ("Real title", "What runs.", ["test"])
        manifest = live_done["manifest"]
        assert manifest["schema"] == "nbapps.gallery/1" and "legacy" not in manifest
        assert [p["name"] for p in manifest["parameters"]] == ["n", "label"]
        assert manifest["client_claim"]["validation"]["claim"] == "LEGACY-FAKE"
        assert sorted(f["path"] for f in manifest["files"]) == ["app.ipynb", "rates.csv"]
        text, _ = executed_text(g, live.id)
        assert "SOURCE-RAN" in text and "LEGACY-FAKE" not in text
        with g.client("vic") as vic:
            thumb = vic.get("/app/legacy-live/thumbnail")
            assert thumb.status_code == 200 and thumb.content != FAKE_PNG
            app = vic.get("/api/apps/legacy-live").json()
            assert [p["name"] for p in app["parameters"]] == ["n", "label"]
            assert app["title"] == "Real title" and app["tags"] == ["test"]
        with catalog_of(g) as (cat, store):
            version = cat.get_version(live.id)
            assert store.is_source_key(version.manifest["source"]["key"])
            folder = _extract(store, version, tmp_path / "runtime")
        assert sorted(p.name for p in folder.iterdir()) == \
            ["app.ipynb", "manifest.json", "rates.csv"]


def migration_0002():
    """The migration module (its file name is not an importable module name)."""
    import importlib.util

    from nbapps.catalog.db import migrations_dir

    path = migrations_dir() / "versions" / "0002_server_checks.py"
    spec = importlib.util.spec_from_file_location("nbapps_migration_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
