"""The catalog side of runs (nbapps.catalog.runs), on SQLite and PostgreSQL.

Queueing checks the app, the version's approval and every parameter value before anything is
queued; the queue limit; batches; the worker protocol of the shared job queue; cancel rights;
latest_run; retention.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from nbapps.catalog import RunQueueFull, TooManyRuns
from nbapps.catalog.models import utcnow
from nbapps.catalog.runs import RUN
from nbapps.errors import Conflict, NotFound, ParameterError, PermissionDenied
from tests.catalog_helpers import add_users, sha

CONTRACT = [
    {"name": "region", "type": "str", "default": "EU", "choices": ["EU", "US"]},
    {"name": "n", "type": "int", "default": 3, "min": 1, "max": 10},
    {"name": "scale", "type": "float", "default": 1.0},
]


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def approved(cat, slug: str = "sales", n: int = 1, *, approve: bool = True) -> int:
    digest = sha(f"{slug}-{n}")
    sub = cat.submit(slug=slug, title=slug.title(), description="d", tags=("t",),
                     sha256=digest, manifest={"schema": "nbapps.gallery/1",
                                              "parameters": CONTRACT},
                     store_key=f"{digest[:2]}/{digest}.nbapp", submitter="ana", size=1)
    if approve:
        cat.decide(sub.version.id, "rita", "approve", "ok")
    return sub.version.id


def test_queue_a_run_of_the_live_version_with_typed_values(cat):
    vid = approved(cat)
    (run,) = cat.queue_runs("sales", [{"region": "US", "n": "4", "scale": 2}], user="vera")
    assert (run.app, run.version_id, run.version, run.state, run.origin, run.owner) == \
        ("sales", vid, 1, "queued", "api", "vera")
    assert run.parameters == {"region": "US", "n": 4, "scale": 2.0}
    assert isinstance(run.parameters["scale"], float)
    assert run.queue_position == 1 and run.batch is None
    assert cat.get_run(run.id) == run
    events = cat.list_audit(action="run.queue")
    assert [(e.actor, e.target, e.details["run_id"]) for e in events] == \
        [("vera", "sales", run.id)]


def test_every_bad_value_is_listed_and_nothing_is_queued(cat):
    approved(cat)
    with pytest.raises(ParameterError) as err:
        cat.queue_runs("sales", [{"region": "XX", "n": 3}, {"n": "many", "nope": 1}],
                       user="vera")
    details = err.value.details
    assert {(d["set"], d["name"], d["code"]) for d in details} == \
        {(0, "region", "NBA103"), (1, "n", "NBA102"), (1, "nope", "NBA101")}
    assert err.value.http_status == 400
    assert cat.count_runs() == 0


def test_unknown_app_unapproved_or_foreign_version(cat):
    with pytest.raises(NotFound):
        cat.queue_runs("nothing", [{}], user="vera")
    pending = approved(cat, "draft", approve=False)
    with pytest.raises(Conflict) as err:
        cat.queue_runs("draft", [{}], user="vera")  # no live version
    assert err.value.code == "NBA371"
    approved(cat, "sales")
    with pytest.raises(NotFound):
        cat.queue_runs("sales", [{}], user="vera", version_id=pending)  # another app's
    v2 = approved(cat, "sales", 2, approve=False)
    with pytest.raises(Conflict) as err:
        cat.queue_runs("sales", [{}], user="vera", version_id=v2)
    assert err.value.code == "NBA371" and err.value.http_status == 409
    assert cat.app_version_for_run("sales", 2) == v2
    with pytest.raises(NotFound):
        cat.app_version_for_run("sales", 9)


def test_batch_shares_an_id_and_the_queue_limit_is_all_or_nothing(cat):
    approved(cat)
    runs = cat.queue_runs("sales", [{"n": i} for i in (1, 2, 3)], user="ana", queue_max=4)
    assert len({r.batch for r in runs}) == 1 and runs[0].batch
    assert [r.queue_position for r in runs] == [1, 2, 3]
    with pytest.raises(RunQueueFull) as err:
        cat.queue_runs("sales", [{"n": 4}, {"n": 5}], user="ana", queue_max=4)
    assert err.value.code == "NBA370" and err.value.http_status == 429
    assert "3 run(s) waiting" in err.value.message
    assert cat.count_runs() == 3
    scheduled = cat.queue_runs("sales", [{}], user=None, origin="schedule", queue_max=4)
    assert scheduled[0].owner is None and scheduled[0].origin == "schedule"
    assert [r.id for r in cat.list_runs("sales")] == sorted(
        [r.id for r in runs] + [scheduled[0].id], reverse=True)
    assert [r.id for r in cat.list_runs("sales", origin="schedule")] == [scheduled[0].id]


def test_one_person_may_not_fill_the_queue_others_share(cat):
    """``user_max`` counts the asker's queued and running runs (a batch one per set), all or
    nothing; others and the gallery's own runs are not counted against them."""
    approved(cat)
    mine = cat.queue_runs("sales", [{"n": 1}, {"n": 2}], user="ana", user_max=3)
    with pytest.raises(TooManyRuns) as err:
        cat.queue_runs("sales", [{"n": 3}, {"n": 4}], user="ana", user_max=3)
    assert err.value.code == "NBA383" and err.value.http_status == 429
    assert err.value.details["yours"] == 2 and "adds 2" in err.value.message
    assert cat.count_runs() == 2
    cat.queue_runs("sales", [{"n": 3}], user="ana", user_max=3)  # exactly at the bound
    cat.queue_runs("sales", [{"n": 5}, {"n": 6}, {"n": 7}], user="rita", user_max=3)
    cat.queue_runs("sales", [{}], user=None, origin="schedule", user_max=3)
    # a finished run no longer counts
    claimed = cat.claim_job("w1", kinds=(RUN,))
    assert claimed is not None and claimed.id == mine[0].id
    assert cat.finish_job(claimed.id, "w1", claimed.attempts, state="passed", result={},
                          artifacts={})
    cat.queue_runs("sales", [{"n": 8}], user="ana", user_max=3)


def test_worker_protocol_cancel_and_latest_run(cat):
    approved(cat)
    a, b = cat.queue_runs("sales", [{"n": 1}, {"n": 2}], user="ana")
    job = cat.claim_job("host/1/1", kinds=(RUN,))
    assert job.id == a.id and cat.claim_job("host/1/1", kinds=("check",)) is None
    assert cat.get_run(a.id).state == "running" and cat.get_run(b.id).queue_position == 1
    result = {"findings": [], "values": {"total": 42}, "seconds": 1.5}
    assert cat.finish_job(job.id, "host/1/1", job.attempts, state="passed", result=result,
                          artifacts={"report.html": sha("r")})
    done = cat.get_run(a.id)
    assert (done.state, done.result, done.artifacts, done.details["seconds"]) == \
        ("passed", {"total": 42}, {"report.html": sha("r")}, 1.5)
    assert cat.latest_run("sales").id == a.id
    assert cat.latest_run("sales", parameters={"n": 1}).id == a.id
    assert cat.latest_run("sales", parameters={"n": 2}) is None
    assert cat.latest_run("sales", origin="schedule") is None
    with pytest.raises(PermissionDenied) as err:
        cat.cancel_run(b.id, user="vera")
    assert err.value.code == "NBA376"
    cancelled = cat.cancel_run(b.id, user="adam")
    assert cancelled.state == "cancelled" and cancelled.finished_at is not None
    with pytest.raises(Conflict) as err:
        cat.cancel_run(a.id, user="ana")
    assert err.value.code == "NBA377"
    assert [e.details["run_id"] for e in cat.list_audit(action="run.cancel")] == [b.id]
    with pytest.raises(NotFound):
        cat.get_run(999)


def test_retention_by_count_and_age(cat):
    approved(cat)
    runs = cat.queue_runs("sales", [{"n": i} for i in range(1, 6)], user="ana")
    for _ in runs[:4]:
        job = cat.claim_job("w", kinds=(RUN,))
        cat.finish_job(job.id, "w", job.attempts, state="passed", result={},
                       artifacts={"result.json": sha(str(job.id))})
    gone = cat.prune_runs(keep_count=2)
    assert sorted(r.id for r in gone) == [runs[0].id, runs[1].id]
    assert [r.id for r in cat.list_runs("sales")] == [r.id for r in runs[::-1][:3]]
    assert cat.referenced_blobs([sha(str(runs[0].id)), sha(str(runs[3].id))]) == \
        {sha(str(runs[3].id))}
    gone = cat.prune_runs(keep_days=1, now=utcnow() + timedelta(days=2))
    assert sorted(r.id for r in gone) == [runs[2].id, runs[3].id]  # the queued one stays
    assert [r.id for r in cat.list_runs("sales")] == [runs[4].id]


def test_an_artifact_made_later_is_recorded_once_on_a_finished_run(cat):
    approved(cat)
    first, second = cat.queue_runs("sales", [{"n": 1}, {"n": 2}], user="ana")
    with pytest.raises(Conflict) as err:  # still queued
        cat.add_run_artifact(first.id, "report.pdf", sha("pdf-0"))
    assert err.value.code == "NBA377"
    job = cat.claim_job("w", kinds=(RUN,))
    cat.finish_job(job.id, "w", job.attempts, state="passed", result={},
                   artifacts={"report.html": sha("html")})
    assert cat.add_run_artifact(job.id, "report.pdf", sha("pdf-1")) == sha("pdf-1")
    # a second print (another replica) loses: the first one recorded stays
    assert cat.add_run_artifact(job.id, "report.pdf", sha("pdf-2")) == sha("pdf-1")
    assert cat.get_run(job.id).artifacts == {"report.html": sha("html"),
                                             "report.pdf": sha("pdf-1")}
    assert cat.referenced_blobs([sha("pdf-1"), sha("pdf-2")]) == {sha("pdf-1")}
    with pytest.raises(NotFound):
        cat.add_run_artifact(999, "report.pdf", sha("pdf-3"))
    assert cat.count_running_jobs() == 0
    cat.claim_job("w", kinds=(RUN,))
    assert cat.count_running_jobs() == 1


def test_a_version_thumbnail_keeps_its_blob_referenced(cat):
    from nbapps.catalog.jobs import CheckRecord

    digest = sha("thumbs-1")
    cat.submit(slug="thumbs", title="Thumbs", description="d", tags=("t",), sha256=digest,
               manifest={"schema": "nbapps.gallery/1", "parameters": CONTRACT},
               store_key=f"{digest[:2]}/{digest}.nbapp", submitter="ana", size=1, check=True)
    job = cat.claim_job("w")
    assert cat.finish_job(job.id, "w", job.attempts, state="passed", result={}, artifacts={},
                          record=CheckRecord(thumbnail=f"blob:{sha('png')}.png"))
    assert cat.referenced_blobs([sha("png"), sha("other")]) == {sha("png")}
