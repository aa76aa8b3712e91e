"""Schedules in the catalog (SQLite and PostgreSQL): replaced when a version goes live, claimed
once by concurrent schedulers, outcomes settled once, broken/recovered, retries, pause."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from nbapps.catalog import open_catalog
from nbapps.errors import NotFound, PermissionDenied
from tests.catalog_helpers import add_users, sha

CONTRACT = [{"name": "region", "type": "str", "default": "EU", "help": "",
             "choices": ["EU", "US"], "min": None, "max": None}]


def schedules_manifest(*schedules: dict) -> dict:
    return {"schema": 1, "parameters": CONTRACT, "schedules": list(schedules)}


def publish(cat, n: int, *schedules: dict, slug: str = "sales") -> int:
    digest = sha(f"{slug}-{n}")
    sub = cat.submit(slug=slug, title=f"Sales v{n}", description="d", tags=(), sha256=digest,
                     manifest=schedules_manifest(*schedules), store_key=f"k/{digest}",
                     submitter="ana")
    cat.decide(sub.version.id, "rita", "approve", "ok")
    return sub.version.id


NIGHTLY = {"name": "nightly", "cron": "0 6 * * *", "timezone": "Europe/Paris",
           "parameters": {"region": "US"}}
HOURLY = {"name": "hourly", "cron": "@hourly"}


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def test_approval_installs_the_versions_schedules_and_rollback_restores(cat):
    before = datetime.now(timezone.utc)
    v1 = publish(cat, 1, NIGHTLY, HOURLY,
                 {"name": "bad", "cron": "0 6 * * *", "parameters": {"region": "FR"}})
    rows = {s.name: s for s in cat.list_schedules("sales")}
    assert set(rows) == {"nightly", "hourly"}  # the invalid one is left out
    nightly = rows["nightly"]
    assert (nightly.version_id, nightly.timezone, nightly.parameters) == (v1, "Europe/Paris",
                                                                         {"region": "US"})
    local = nightly.next_due_at.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (6, 0) and nightly.next_due_at > before
    cat.set_schedule_paused("sales", "nightly", True, actor="adam")
    v2 = publish(cat, 2, NIGHTLY)
    rows2 = cat.list_schedules("sales")
    assert [(s.name, s.version_id, s.paused, s.paused_by) for s in rows2] == [
        ("nightly", v2, True, "adam")]  # replaced; the admin's pause carries over by name
    cat.rollback("sales", "rita")
    assert sorted((s.name, s.version_id) for s in cat.list_schedules("sales")) == [
        ("hourly", v1), ("nightly", v1)]
    events = [e.action for e in cat.list_audit(limit=100)]
    assert "schedule.pause" in events


def test_pause_is_admin_only_and_unknown_names_are_not_found(cat):
    publish(cat, 1, NIGHTLY)
    for who in ("rita", "ana", "vera"):
        with pytest.raises(PermissionDenied) as err:
            cat.set_schedule_paused("sales", "nightly", True, actor=who)
        assert err.value.code == "NBA301"
    with pytest.raises(NotFound):
        cat.set_schedule_paused("sales", "nope", True, actor="adam")
    paused = cat.set_schedule_paused("sales", "nightly", True, actor="adam")
    assert paused.paused
    far = datetime.now(timezone.utc) + timedelta(days=3)
    assert cat.claim_due_schedules("w", now=far) == []  # paused: never claimed
    resumed = cat.set_schedule_paused("sales", "nightly", False, actor="adam")
    assert not resumed.paused and resumed.next_due_at > datetime.now(timezone.utc)
    assert len(cat.claim_due_schedules("w", now=far)) == 1


def test_claim_moves_next_due_once_and_coalesces_missed_firings(cat):
    publish(cat, 1, HOURLY)
    first = cat.list_schedules("sales")[0].next_due_at
    late = first + timedelta(hours=5, minutes=30)  # five firings missed: one run
    claims = cat.claim_due_schedules("w1", now=late)
    assert len(claims) == 1 and claims[0].due_at == first and not claims[0].retry
    after = cat.get_schedule(claims[0].schedule.id)
    assert after.next_due_at == first + timedelta(hours=6) and after.run_state == "claimed"
    # claimed (run not recorded yet): nobody else fires it, even when the next time is due...
    assert cat.claim_due_schedules("w2", now=late + timedelta(hours=2),
                                   stale_claim_seconds=3 * 3600) == []
    # ...unless the claim is stale (its gallery died between claim and queue): taken over
    [taken] = cat.claim_due_schedules("w2", now=late + timedelta(hours=2))
    assert taken.worker == "w2" and not cat.record_schedule_run(claims[0], 4241)
    claims = [taken]
    assert cat.record_schedule_run(claims[0], 4242)
    assert not cat.record_schedule_run(claims[0], 4243)  # once
    assert cat.pending_schedule_runs() == [(after.id, 4242)]


def test_concurrent_claims_fire_each_due_time_once(catalog_url, cat):
    for i in range(6):
        publish(cat, 1, HOURLY, NIGHTLY, slug=f"app-{i}")
    far = datetime.now(timezone.utc) + timedelta(days=2)
    cats = [open_catalog(catalog_url) for _ in range(4)]
    results: list[list] = [[] for _ in cats]
    barrier = threading.Barrier(len(cats))

    def claim(i: int) -> None:
        barrier.wait()
        results[i] = cats[i].claim_due_schedules(f"w{i}", now=far)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(cats))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for c in cats:
            c.close()
    got = [c.schedule.id for r in results for c in r]
    assert len(got) == 12 and len(set(got)) == 12  # every schedule claimed, by one worker


def test_failure_marks_broken_retries_with_backoff_and_success_recovers(cat):
    publish(cat, 1, HOURLY)
    sched = cat.list_schedules("sales")[0]
    now = sched.next_due_at
    finding = {"code": "NBA070", "message": "cell 3 raised ValueError", "severity": "error"}

    def fire(at: datetime, run_id: int, state: str, **kw):
        [claim] = cat.claim_due_schedules("w", now=at)
        assert cat.record_schedule_run(claim, run_id)
        return claim, cat.settle_schedule_run(claim.schedule.id, run_id, state=state,
                                              findings=[finding] if state != "passed" else [],
                                              retry_base=10, retry_max=25, retries=3, now=at,
                                              **kw)

    assert not cat.app_health("sales").broken
    _, out = fire(now, 1, "failed")
    assert out.became_broken and not out.recovered
    assert out.schedule.retry_at == now + timedelta(seconds=10)
    health = cat.app_health("sales")
    assert health.broken and health.run_id == 1 and health.findings == [finding]
    assert set(cat.broken_apps(["sales", "other"])) == {"sales"}
    assert cat.settle_schedule_run(sched.id, 1, state="failed") is None  # settled once
    claim, out = fire(now + timedelta(seconds=10), 2, "error")
    assert claim.retry and not out.became_broken
    assert out.schedule.retry_at == now + timedelta(seconds=30)  # 10 + 20
    _, out = fire(now + timedelta(seconds=30), 3, "failed")
    assert out.schedule.retry_at == now + timedelta(seconds=55)  # 30 + 25 (capped)
    _, out = fire(now + timedelta(seconds=55), 4, "failed")
    assert out.schedule.failures == 4 and out.schedule.retry_at is None  # retries used up
    assert cat.claim_due_schedules("w", now=now + timedelta(minutes=30)) == []
    _, out = fire(now + timedelta(hours=1), 5, "passed")
    assert out.recovered and out.schedule.failures == 0
    assert out.schedule.last_passed_run_id == 5
    assert not cat.app_health("sales").broken and cat.broken_apps() == {}


def test_seconds_schedules_are_claimed_only_when_allowed(cat):
    publish(cat, 1, {"name": "fast", "cron": "*/2 * * * * *"})
    later = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert cat.claim_due_schedules("w", now=later) == []
    [claim] = cat.claim_due_schedules("w", now=later, allow_seconds=True)
    nxt = cat.get_schedule(claim.schedule.id).next_due_at
    assert later < nxt <= later + timedelta(seconds=2)


def test_a_run_that_cannot_be_queued_is_retried_later(cat):
    publish(cat, 1, HOURLY)
    at = cat.list_schedules("sales")[0].next_due_at
    [claim] = cat.claim_due_schedules("w", now=at)
    assert cat.record_schedule_run(claim, None, retry_in=30)
    row = cat.get_schedule(claim.schedule.id)
    assert row.run_state == "skipped" and row.retry_at is not None
    assert not cat.app_health("sales").broken


def test_broken_state_carries_over_to_the_new_version_until_its_run_passes(cat):
    publish(cat, 1, HOURLY, NIGHTLY)
    at = min(s.next_due_at for s in cat.list_schedules("sales"))
    [claim] = [c for c in cat.claim_due_schedules("w", now=at + timedelta(hours=1))
               if c.schedule.name == "hourly"] or [None]
    assert claim is not None
    cat.record_schedule_run(claim, 7)
    cat.settle_schedule_run(claim.schedule.id, 7, state="failed",
                            findings=[{"code": "NBA070", "message": "boom"}])
    v2 = publish(cat, 2, HOURLY)  # the fix keeps the schedule's name
    health = cat.app_health("sales")
    assert health.broken and health.run_id == 7 and health.schedule == "hourly"
    [row] = cat.list_schedules("sales")
    assert row.version_id == v2 and row.retry_at is None and row.run_state is None
    [claim] = cat.claim_due_schedules("w", now=row.next_due_at)
    cat.record_schedule_run(claim, 8)
    out = cat.settle_schedule_run(claim.schedule.id, 8, state="passed")
    assert out.recovered and not cat.app_health("sales").broken
    publish(cat, 3, NIGHTLY)  # dropped schedules take nothing with them
    assert [s.name for s in cat.list_schedules("sales")] == ["nightly"]
