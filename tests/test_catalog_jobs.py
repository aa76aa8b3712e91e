"""The durable job queue and the check states of versions (nbapps.catalog.jobs), both DBs.

Claims, leases, positions, finishing a check (which moves its version), cancellation when the
version is withdrawn, recovery of jobs whose worker died, re-checks by reviewers, background
checks of versions recorded without one, the queue limit.
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from nbapps.catalog import QueueFull
from nbapps.catalog.jobs import CheckRecord
from nbapps.catalog.models import Job, utcnow
from nbapps.errors import Conflict, PermissionDenied
from nbapps.review import State
from tests.catalog_helpers import add_users, sha

W1, W2 = "host/1/1", "host/2/2"


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def submit_checked(cat, slug: str, n: int = 1, submitter: str = "ana", **kw):
    digest = sha(f"{slug}-{n}")
    return cat.submit(slug=slug, title=slug.title(), description="d", tags=("t",),
                      sha256=digest, manifest={"schema": "nbapps.gallery/1"},
                      store_key=f"sources/{digest[:2]}/{digest}.tar.gz", submitter=submitter,
                      check=True, **kw)


def test_submit_with_check_is_validating_with_one_queued_job(cat):
    sub = submit_checked(cat, "sales")
    v = sub.version
    assert sub.created and v.state is State.VALIDATING
    job = cat.latest_job(v.id)
    assert (job.kind, job.state, job.owner, job.queue_position, job.attempts) == \
        ("check", "queued", "ana", 1, 0)
    again = submit_checked(cat, "sales")  # identical content: the same version, no new job
    assert not again.created and again.version.id == v.id
    assert cat.count_jobs(kind="check") == 1
    # nobody decides before the verdict
    with pytest.raises(Conflict) as err:
        cat.decide(v.id, "rita", "approve", "ok")
    assert err.value.code == "NBA321"


def test_queue_positions_claim_order_and_priority(cat):
    ids = [submit_checked(cat, f"app{i}").version.id for i in range(3)]
    positions = {vid: j.queue_position for vid, j in cat.latest_jobs(ids).items()}
    assert [positions[v] for v in ids] == [1, 2, 3]
    background = cat.enqueue_job("check", version_id=ids[0], priority=10)
    assert background.queue_position == 4  # behind what people asked for
    first = cat.claim_job(W1, lease_seconds=30)
    assert first.version_id == ids[0] and first.state == "running" and first.attempts == 1
    assert first.queue_position is None and first.claimed_by == W1
    after = cat.latest_jobs(ids[1:])
    assert [after[v].queue_position for v in ids[1:]] == [1, 2]
    with pytest.raises(ValueError):
        cat.finish_job(first.id, W1, 1, state="queued")


def test_concurrent_claims_never_share_a_job(cat):
    for i in range(3):
        submit_checked(cat, f"c{i}")
    barrier = threading.Barrier(6)
    got: list[object] = []
    lock = threading.Lock()

    def claim(i: int) -> None:
        barrier.wait()
        try:
            job = cat.claim_job(f"host/{i}/0", lease_seconds=30)
        except Exception as exc:  # noqa: BLE001 - inspected below
            job = exc
        with lock:
            got.append(job)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [g for g in got if isinstance(g, Exception)], got
    claimed = [g for g in got if g is not None]
    assert len({j.id for j in claimed}) == len(claimed) <= 3
    # whoever lost a race just asks again: all three end up claimed, each once
    while cat.claim_job(W2, lease_seconds=30) is not None:
        pass
    assert cat.count_jobs(state="running") == 3 and cat.count_jobs(state="queued") == 0


def test_passed_check_makes_the_version_reviewable_and_records_what_it_derived(cat):
    v = submit_checked(cat, "good").version
    job = cat.claim_job(W1)
    assert cat.renew_job(job.id, W1, job.attempts)
    assert not cat.renew_job(job.id, W2, job.attempts)  # not W2's claim
    record = CheckRecord(manifest={"schema": "nbapps.gallery/1", "title": "Derived"},
                         thumbnail="blob:" + "a" * 64 + ".png")
    result = {"ok": True, "findings": [], "runs": [{"label": "default", "ok": True}]}
    assert cat.finish_job(job.id, W1, job.attempts, state="passed", result=result,
                          artifacts={"report": "b" * 64}, record=record)
    after = cat.get_version(v.id)
    assert after.state is State.SUBMITTED
    assert after.thumbnail == "blob:" + "a" * 64 + ".png"
    assert after.manifest["title"] == "Derived"
    done = cat.get_job(job.id)
    assert done.state == "passed" and done.artifacts == {"report": "b" * 64}
    assert done.result["runs"][0]["label"] == "default" and done.finished_at is not None
    # a late second finish of the same claim changes nothing
    assert not cat.finish_job(job.id, W1, job.attempts, state="failed")
    events = [e for e in cat.list_audit() if e.action == "version.check"]
    assert len(events) == 1 and events[0].actor == "system"
    assert events[0].details["result"] == "passed" and events[0].details["to"] == "submitted"
    cat.decide(v.id, "rita", "approve", "ok")


def test_failed_check_cannot_be_approved_but_can_be_sent_back_or_rechecked(cat):
    v = submit_checked(cat, "bad").version
    job = cat.claim_job(W1)
    finding = {"code": "NBA070", "severity": "error", "message": "cell 2 raised"}
    cat.finish_job(job.id, W1, 1, state="failed", result={"ok": False, "findings": [finding]})
    assert cat.get_version(v.id).state is State.FAILED
    with pytest.raises(Conflict) as err:
        cat.decide(v.id, "rita", "approve", "ok")
    assert err.value.code == "NBA320"
    with pytest.raises(PermissionDenied):  # analysts do not re-queue checks
        cat.recheck(v.id, "alf")
    again = cat.recheck(v.id, "rita")
    assert again.state is State.VALIDATING
    new = cat.latest_job(v.id)
    assert new.id != job.id and new.state == "queued" and new.owner == "rita"
    with pytest.raises(Conflict) as err:  # already being checked
        cat.recheck(v.id, "rob")
    assert err.value.code == "NBA305"
    job2 = cat.claim_job(W1)
    cat.finish_job(job2.id, W1, 1, state="error", result={"findings": [
        {"code": "NBA324", "severity": "error", "message": "could not check"}]})
    assert cat.get_version(v.id).state is State.FAILED
    waiting = submit_checked(cat, "queued-one").version
    assert [q.id for q in cat.list_queue()] == [v.id, waiting.id]  # failed ones wait too
    sent_back = cat.decide(v.id, "rita", "request_changes", "fix cell 2")
    assert sent_back.state is State.CHANGES_REQUESTED
    assert any(e.action == "version.recheck" for e in cat.list_audit())


def test_withdrawing_while_validating_cancels_the_check(cat):
    v = submit_checked(cat, "gone").version
    job = cat.claim_job(W1)
    cat.withdraw(v.id, "ana", "not yet")
    assert cat.get_version(v.id).state is State.WITHDRAWN
    assert cat.get_job(job.id).state == "cancelled"
    assert not cat.renew_job(job.id, W1, job.attempts)  # the worker learns it and stops
    assert not cat.finish_job(job.id, W1, job.attempts, state="passed")
    assert cat.get_version(v.id).state is State.WITHDRAWN
    queued = submit_checked(cat, "gone2").version
    cat.withdraw(queued.id, "ana")
    assert cat.latest_job(queued.id).state == "cancelled"
    assert cat.claim_job(W1) is None


def test_release_and_recovery_of_running_jobs(cat):
    a = submit_checked(cat, "a").version
    b = submit_checked(cat, "b").version
    ja = cat.claim_job(W1, lease_seconds=300)
    jb = cat.claim_job(W2, lease_seconds=300)
    # a clean stop gives the job back without counting the attempt
    assert cat.release_job(ja.id, W1, ja.attempts)
    back = cat.get_job(ja.id)
    assert back.state == "queued" and back.attempts == 0 and back.claimed_by is None
    # a claimer that is gone (its process no longer runs): re-queued at once
    assert cat.recover_jobs(is_gone=lambda who: who == W2) == [jb.id]
    assert cat.get_job(jb.id).state == "queued"
    assert not cat.finish_job(jb.id, W2, jb.attempts, state="passed")  # fenced
    # an expired lease: re-queued by anyone
    again = cat.claim_job(W1, lease_seconds=300)
    assert again.id == ja.id  # the older job first
    assert cat.finish_job(ja.id, W1, again.attempts, state="passed")
    jb3 = cat.claim_job(W1, lease_seconds=0.2)
    assert jb3.id == jb.id and jb3.attempts == 2
    time.sleep(0.3)  # let the lease run out (the lease is the thing under test)
    assert cat.recover_jobs() == [jb.id]
    # started max_attempts times and never finished: ends in error and its version fails
    jb4 = cat.claim_job(W1, lease_seconds=300)
    assert jb4.id == jb.id and jb4.attempts == 3
    assert cat.recover_jobs(is_gone=lambda who: True, max_attempts=3) == []
    gave_up = cat.get_job(jb.id)
    assert gave_up.state == "error" and gave_up.result["findings"][0]["code"] == "NBA324"
    assert cat.get_version(b.id).state is State.FAILED
    assert cat.get_version(a.id).state is State.SUBMITTED


def test_expired_lease_is_recovered_on_the_database_clock(cat):
    submit_checked(cat, "lease")
    job = cat.claim_job(W1, lease_seconds=300)
    with cat._write() as s:  # the lease of a replica that stopped answering long ago
        s.execute(update(Job).where(Job.id == job.id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=5)))
    assert cat.recover_jobs() == [job.id]


def test_queue_limit(cat):
    submit_checked(cat, "q1", max_queued=2)
    submit_checked(cat, "q2", max_queued=2)
    before = cat.count_versions()
    with pytest.raises(QueueFull) as err:
        submit_checked(cat, "q3", max_queued=2)
    assert err.value.code == "NBA322" and err.value.http_status == 429
    assert cat.count_versions() == before  # nothing recorded
    cat.claim_job(W1)  # one leaves the queue: there is room again
    assert submit_checked(cat, "q3", max_queued=2).created


def test_versions_recorded_without_a_check_get_one_in_the_background(cat):
    from tests.catalog_helpers import publish, submit

    waiting = submit(cat, "old-sub", 1).version.id
    live = publish(cat, "old-live", 1)
    rejected = submit(cat, "old-rej", 1).version.id
    cat.decide(rejected, "rita", "reject", "no")
    checked = submit_checked(cat, "new").version.id
    assert cat.queue_unchecked(batch=1) == 2
    assert cat.queue_unchecked() == 0
    assert cat.get_version(waiting).state is State.VALIDATING  # waits for the verdict again
    assert cat.get_version(live).state is State.APPROVED  # stays live
    assert cat.latest_job(rejected) is None
    jobs = cat.latest_jobs([waiting, live, checked])
    assert jobs[waiting].priority == jobs[live].priority == 10 and jobs[checked].priority == 0
    assert jobs[waiting].owner is None
    # the background ones wait behind the submission people made
    assert cat.claim_job(W1).version_id == checked
    job = cat.claim_job(W1)
    assert job.version_id == waiting
    cat.finish_job(job.id, W1, 1, state="passed")
    assert cat.get_version(waiting).state is State.SUBMITTED
    job = cat.claim_job(W1)
    cat.finish_job(job.id, W1, 1, state="failed")
    assert cat.get_version(live).state is State.APPROVED  # a live version is not pulled


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_catalog_url(request, tmp_path):
    """An empty database (not migrated), on both backends."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    server = request.getfixturevalue("pg_server")
    name, url = server.fresh_database(migrated=False)
    try:
        yield url
    finally:
        server.drop_database(name)


def test_migration_0002_moves_client_manifests_aside(old_catalog_url):
    """A catalog of an earlier nbapps: its versions' manifests and thumbnails were the
    client's; after the upgrade they are only the client's claim, and no check exists yet."""
    import json

    from alembic import command
    from sqlalchemy import create_engine, text

    from nbapps.catalog import open_catalog
    from nbapps.catalog.db import alembic_config, normalize_db_url

    engine = create_engine(normalize_db_url(old_catalog_url))
    client = {"title": "A", "parameters": [{"name": "evil"}], "validation": {"ok": True}}
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
            conn.execute(text("INSERT INTO users (id, name, role, created_at, disabled) "
                              "VALUES (1, 'ana', 'analyst', '2025-01-01', false)"))
            conn.execute(text("INSERT INTO apps (id, slug, title, description, tags_text, "
                              "author_id, view_count, created_at, updated_at) VALUES (1, 'a', "
                              "'A', '', '', 1, 0, '2025-01-01', '2025-01-01')"))
            for vid in (1, 2):
                conn.execute(text(
                    "INSERT INTO versions (id, app_id, number, sha256, title, description, "
                    "tags_text, manifest, store_key, thumbnail, submitter_id, state, "
                    "created_at) VALUES (:id, 1, :id, :sha, 'A', '', '', :m, 'x', "
                    "'thumbnail.png', 1, 'submitted', '2025-01-01')"),
                    {"id": vid, "sha": str(vid) * 64, "m": json.dumps(client)})
    finally:
        engine.dispose()
    cat = open_catalog(old_catalog_url)
    try:
        for vid in (1, 2):
            v = cat.get_version(vid)
            assert v.manifest == {"legacy": True, "notebook": "app.ipynb",
                                  "client_claim": client}
            assert v.thumbnail is None and v.state is State.SUBMITTED
        assert cat.count_jobs() == 0
        assert cat.queue_unchecked() == 2  # what the gallery does at its start
    finally:
        cat.close()


def test_job_artifacts_page_through_every_job(cat):
    """``nbapps store check`` walks every job's artifacts, page by page, oldest first."""
    ids = [submit_checked(cat, f"art{i}").version.id for i in range(3)]
    job = cat.claim_job(W1)
    assert cat.finish_job(job.id, W1, job.attempts, state="passed",
                          artifacts={"report": sha("r")})
    first = cat.job_artifacts(limit=2)
    assert [(v, a) for _, v, a in first] == [(ids[0], {"report": sha("r")}), (ids[1], {})]
    rest = cat.job_artifacts(after_id=first[-1][0], limit=2)
    assert [v for _, v, _ in rest] == [ids[2]]
    assert cat.job_artifacts(after_id=rest[-1][0]) == []


def test_a_failing_change_report_never_ends_a_check_worker(cat, tmp_path, caplog):
    """The server hears of a finished check through ``on_change``; when that raises (it did,
    from the worker's thread, and the worker's later checks then waited forever) the outcome
    stays recorded and the worker goes on."""
    from nbapps.jobs.pool import CheckPool
    from nbapps.jobs.worker import CheckSettings, error_outcome
    from nbapps.store import BundleStore

    def report() -> None:
        raise RuntimeError("no running event loop")

    pool = CheckPool(CheckSettings(data_dir=tmp_path, workers=0), cat,
                     BundleStore(f"file://{tmp_path / 'bundles'}"), on_change=report)
    v = submit_checked(cat, "sales").version
    job = cat.claim_job(pool.name)
    assert job is not None
    pool._finish(job, error_outcome("the notebook could not be read"))
    assert cat.latest_job(v.id).state == "error" and pool.finished == 1
    assert "reporting a catalog change failed" in caplog.text
