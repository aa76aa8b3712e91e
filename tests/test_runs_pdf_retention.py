"""PDFs printed on first download (nbapps.runs.pdf) and the blobs of pruned runs deleted
(RunPool.prune / forget_blobs), with real kernels, a real gallery, Chromium and (for the S3
store) a real S3-compatible server.

One gallery (a thread, one run worker, PDFs on, ``run_keep_count=1``: retention applied only
when a test calls ``prune()``) serves the module; its run pool is captured to read its PDF and
retention counters.
"""
from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nbapps import report_pdf
from nbapps.catalog import open_catalog
from nbapps.runs.pdf import printing_available
from nbapps.runs.pool import RunPool
from nbapps.runs.worker import RunSettings
from nbapps.store import BundleStore
from tests.server_harness import Gallery, ThreadServer, catalog_of, new_data_dir
from tests.test_runs_api import BASE_ARGS, RECORDING, app_notebook, publish, wait_run

pytestmark = pytest.mark.kernel

RUN_TIMEOUT = 240.0  # a run on a loaded 2-core machine


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir, url, users = new_data_dir(tmp_path_factory.mktemp("runs-pdf"))
    args = [a for a in BASE_ARGS if "run_pdf" not in a] + [
        "--NbappsServer.run_workers=1", "--NbappsServer.run_keep_count=1",
        "--NbappsServer.run_keep_days=None"]
    server = ThreadServer(data_dir, url, args)
    pools: list[RunPool] = []
    make = server.server.make_run_pool

    def capture(ctx):  # keep the gallery's run pool to read its counters
        pools.append(make(ctx))
        return pools[-1]

    server.server.make_run_pool = capture
    try:
        base = server.start()
        g = Gallery(url=base.rstrip("/"), data_dir=data_dir, db_url=url, users=users,
                    server=server)
        publish(g, "sales", app_notebook([RECORDING], outputs=["summary.csv"]))
        publish(g, "tally", app_notebook([RECORDING], outputs=["summary.csv"]))
        publish(g, "cli", app_notebook([RECORDING]))
        yield g, pools[0]
    finally:
        server.stop()


def run_once(c, slug: str, parameters: dict) -> dict:
    r = c.post(f"/api/apps/{slug}/runs", json={"parameters": parameters})
    assert r.status_code == 202, r.text
    run = wait_run(c, r.json()["runs"][0]["id"], timeout=RUN_TIMEOUT)
    assert run["state"] == "passed", run
    return run


@pytest.mark.browser
def test_a_pdf_is_printed_once_at_its_first_download(served):
    g, pool = served
    if not printing_available():
        pytest.skip("Playwright or /usr/bin/chromium missing")
    before = report_pdf.prints()
    with g.client("vic") as c:
        run = run_once(c, "sales", {"n": 3, "label": "x"})
        # offered, not printed
        assert "report.pdf" not in run["artifacts"]
        assert run["on_request"] == ["report.pdf"]
        url = run["artifact_urls"]["report.pdf"]
        assert (report_pdf.prints(), pool.pdfs.printed) == (before, 0)
        page = c.get("/app/sales").text
        assert f'/api/runs/{run["id"]}/report.pdf?download=1' in page

        # a print past its time limit: the coded error, nothing recorded, a later try works
        pool.pdfs.timeout = 0.001
        try:
            failed = c.get(url)
        finally:
            pool.pdfs.timeout = 60.0
        assert failed.status_code == 500 and failed.json()["error"] == "NBA387", failed.text
        assert "report.pdf" not in c.get(run["url"]).json()["artifacts"]
        assert pool.pdfs.printed == 0

    # two first downloads at once share one print
    start = threading.Barrier(2)

    def fetch(_: int) -> tuple[int, bytes]:
        with g.client("vic") as own:
            start.wait(10)
            r = own.get(url, timeout=120)
            return r.status_code, r.content

    with ThreadPoolExecutor(2) as ex:
        answers = list(ex.map(fetch, range(2)))
    assert [status for status, _ in answers] == [200, 200]
    assert answers[0][1].startswith(b"%PDF-") and answers[0][1] == answers[1][1]
    assert (report_pdf.prints(), pool.pdfs.printed) == (before + 1, 1)

    with g.client("vic") as c:
        kept = c.get(run["url"]).json()
        assert "report.pdf" in kept["artifacts"] and kept["on_request"] == []
        again = c.get(url)
        assert again.status_code == 200 and again.content == answers[0][1]
        assert again.headers["content-type"] == "application/pdf"
    assert (report_pdf.prints(), pool.pdfs.printed) == (before + 1, 1)  # not printed again


@pytest.mark.browser
def test_the_cli_gets_the_pdf_printed_at_its_download(served, tmp_path, monkeypatch, capsys):
    from nbapps.cli.main import main

    g, pool = served
    if not printing_available():
        pytest.skip("Playwright or /usr/bin/chromium missing")
    monkeypatch.setenv("NBAPPS_GALLERY", g.url)
    monkeypatch.setenv("NBAPPS_TOKEN", g.users["vic"].token)
    monkeypatch.setenv("NBAPPS_CONFIG", str(tmp_path / "none.toml"))
    assert main(["runs", "create", "cli", "-p", "n", "2", "--wait", "--format", "json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert main(["runs", "show", str(run["id"])]) == 0
    shown = capsys.readouterr().out.splitlines()
    assert any(line.strip().startswith("report.pdf: ")
               and line.endswith("(made when first downloaded)") for line in shown), shown
    printed = pool.pdfs.printed
    out = tmp_path / "out"
    assert main(["runs", "create", "cli", "-p", "n", "3", "--download", str(out)]) == 0
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    assert (out / "report.html").is_file() and (out / "result.json").is_file()
    assert pool.pdfs.printed == printed + 1


def test_pruned_runs_lose_the_blobs_only_they_used(served):
    g, pool = served
    with g.client("vic") as c:
        first = run_once(c, "tally", {"n": 5, "label": "y"})
        if printing_available():  # a PDF printed on demand goes with its run too
            assert c.get(first["artifact_urls"]["report.pdf"]).status_code == 200
            first = c.get(first["url"]).json()
        second = run_once(c, "tally", {"n": 5, "label": "y"})
    # content-addressed: the same values and output file are one blob for both runs
    shared = {n for n in first["artifacts"]
              if first["artifacts"][n] == second["artifacts"].get(n)}
    assert {"result.json", "summary.csv"} <= shared
    only_first = {first["artifacts"][n] for n in set(first["artifacts"]) - shared}
    assert len(only_first) >= 2  # executed.ipynb, report.html (+ report.pdf)
    with catalog_of(g) as (_cat, store):
        assert all(store.has_blob(sha) for sha in only_first)

        deleted_before = pool.blobs_deleted
        assert pool.prune() >= 1  # keep_count=1: the first run of "tally" goes
        with g.client("vic") as c:
            assert c.get(first["url"]).status_code == 404
            assert c.get(second["url"]).json()["state"] == "passed"
            # the kept run's outputs are all still there, the shared ones included
            for name, sha in second["artifacts"].items():
                assert store.has_blob(sha), name
            assert c.get(second["artifact_urls"]["result.json"]).json() == \
                {"total": 10, "label": "y"}
        assert not any(store.has_blob(sha) for sha in only_first)
        assert pool.blobs_deleted - deleted_before >= len(only_first)  # other apps' too
        # blobs already gone are no error (counted as removed); one a run names is kept
        assert pool.forget_blobs([*only_first, second["artifacts"]["result.json"]]) == \
            len(only_first)
        assert store.has_blob(second["artifacts"]["result.json"])


# -- the S3 store -------------------------------------------------------------------------------

def test_unreferenced_blobs_are_deleted_from_an_s3_store(s3, tmp_path):
    from tests.server_harness import seed_version

    store = BundleStore(s3.new_bucket_url(), **s3.storage_options())
    data_dir, url, _users = new_data_dir(tmp_path)
    cat = open_catalog(url)
    try:
        sub = seed_version(cat, store, slug="s3-app", submitter="ana", title="S3 app")
        cat.decide(sub.version.id, "rita", "approve", "ok")
        kept, dropped = store.put_blob(b"kept by a run"), store.put_blob(b"nobody's")
        (run,) = cat.queue_runs("s3-app", [{}], user="vic")
        job = cat.claim_job("test-worker", kinds=("run",))
        assert job is not None and job.id == run.id
        assert cat.finish_job(job.id, "test-worker", job.attempts, state="passed",
                              artifacts={"result.json": kept})
        pool = RunPool(RunSettings(data_dir=Path(data_dir), workers=0), cat, store)
        s3.mark()
        seen = len(s3.requests())
        assert pool.forget_blobs([kept, dropped]) == 1
        s3.mark()
        deletes = [p for m, p, _ in s3.requests()[seen:] if m == "DELETE"]
        assert deletes == [f"/{store.root}/{store.blob_key(dropped)}"]
        assert store.has_blob(kept) and not store.has_blob(dropped)
        store.delete_blob(dropped)  # already gone: no error
        assert pool.forget_blobs([dropped]) == 1 and not store.has_blob(dropped)
    finally:
        cat.close()


def test_unreferenced_blobs_wait_while_a_job_runs(tmp_path):
    data_dir, url, _users = new_data_dir(tmp_path)
    store = BundleStore(f"file://{data_dir / 'bundles'}")
    cat = open_catalog(url)
    try:
        from tests.server_harness import seed_version

        sub = seed_version(cat, store, slug="busy-app", submitter="ana", title="Busy app")
        cat.decide(sub.version.id, "rita", "approve", "ok")
        blob = store.put_blob(b"a run may just have found this one stored")
        cat.queue_runs("busy-app", [{}], user="vic")
        job = cat.claim_job("test-worker", kinds=("run",))
        assert job is not None
        pool = RunPool(RunSettings(data_dir=Path(data_dir), workers=0), cat, store)
        assert pool.forget_blobs([blob]) == 0 and store.has_blob(blob)  # a job is running
        cat.finish_job(job.id, "test-worker", job.attempts, state="passed", artifacts={})
        pool.prune()  # the next pass, with nothing running
        assert not store.has_blob(blob)
    finally:
        cat.close()
