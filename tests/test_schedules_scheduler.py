"""The Scheduler over a real catalog (SQLite and PostgreSQL): two schedulers on one database
queue each firing once, outcomes are read once, failures mark the app broken, retry with
backoff and POST to a real webhook server; a success clears it. Runs are finished through the
catalog's own worker protocol (``claim_job`` / ``finish_job``), as a run worker does."""
from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest

from nbapps.catalog import open_catalog
from nbapps.schedules.scheduler import Scheduler, SchedulerSettings
from tests.catalog_helpers import add_users, sha

CONTRACT = [{"name": "region", "type": "str", "default": "EU", "help": "",
             "choices": ["EU", "US"], "min": None, "max": None}]
FAST = {"name": "fast", "cron": "* * * * * *", "parameters": {"region": "US"}}
FINDING = {"code": "NBA070", "message": "cell 2 raised ValueError: no data for US",
           "severity": "error"}


def publish(cat, *schedules: dict, slug: str = "sales") -> int:
    digest = sha(slug)
    sub = cat.submit(slug=slug, title="Sales", description="d", tags=(), sha256=digest,
                     manifest={"schema": 1, "parameters": CONTRACT,
                               "schedules": list(schedules)},
                     store_key=f"k/{digest}", submitter="ana")
    cat.decide(sub.version.id, "rita", "approve", "ok")
    return sub.version.id


def wait_due(cat, slug: str = "sales", timeout: float = 10.0) -> None:
    """Poll until the schedule's next firing (or retry) is due."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sched = cat.list_schedules(slug)[0]
        due = [t for t in (sched.next_due_at, sched.retry_at) if t is not None]
        if due and min(due) <= datetime.now(timezone.utc):
            return
        time.sleep(0.05)
    raise AssertionError("the schedule never became due")


def finish_next_run(cat, state: str, findings: list | None = None) -> int:
    job = cat.claim_job("test-run-worker", kinds=("run",))
    assert job is not None, "no run queued"
    assert cat.finish_job(job.id, "test-run-worker", job.attempts, state=state,
                          result={"findings": findings or []})
    return job.id


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    handler = type("H", (Hook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=s3cret", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def wait_received(received: list[dict], count: int, timeout: float = 30.0) -> None:
    """Poll until the webhook server got ``count`` notifications (they are sent by a thread)."""
    deadline = time.monotonic() + timeout
    while len(received) < count:
        assert time.monotonic() < deadline, f"{len(received)} of {count} notifications"
        time.sleep(0.02)


def settings(**kw) -> SchedulerSettings:
    base = {"tick": 0.2, "allow_seconds": True, "retry_base": 0.5, "retry_max": 5.0,
            "retries": 2, "public_url": "https://gallery.example/"}
    return SchedulerSettings(**{**base, **kw})


def test_two_schedulers_on_one_database_queue_each_firing_once(catalog_url, cat):
    publish(cat, FAST)
    cats = [open_catalog(catalog_url) for _ in range(2)]
    schedulers = [Scheduler(c, settings()) for c in cats]
    try:
        carry: list[int] = []  # a run queued by a tick that also read an outcome
        for round_ in range(3):
            if carry:
                queued = carry
            else:
                wait_due(cat)
                barrier = threading.Barrier(2)
                results: list = [None, None]

                def tick(i: int, barrier: threading.Barrier, results: list) -> None:
                    barrier.wait()
                    results[i] = schedulers[i].tick()

                threads = [threading.Thread(target=tick, args=(i, barrier, results))
                           for i in range(2)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(30)
                queued = results[0].queued + results[1].queued
            assert len(queued) == 1, f"round {round_}: {queued}"
            run = cat.get_run(queued[0])
            assert (run.origin, run.owner, run.parameters) == ("schedule", None,
                                                               {"region": "US"})
            finish_next_run(cat, "passed")
            outs = [sch.tick() for sch in schedulers]
            settled = [r for o in outs for r in o.settled]
            assert settled == [("sales", "fast", "passed")]  # read once, by one of them
            carry = [q for o in outs for q in o.queued]
            assert len(carry) <= 1
        assert len(cat.list_runs("sales", origin="schedule")) == 3 + len(carry)
        assert sum(sch.fired for sch in schedulers) == 3 + len(carry)
    finally:
        for c in cats:
            c.close()


def test_failure_breaks_the_app_retries_notifies_and_success_clears(cat, webhook):
    url, received = webhook
    publish(cat, FAST)
    sched = Scheduler(cat, settings(webhook_url=url))
    wait_due(cat)
    [first] = sched.tick().queued
    finish_next_run(cat, "failed", [FINDING])
    result = sched.tick()
    assert result.settled == [("sales", "fast", "failed")] and result.notified == 1
    health = cat.app_health("sales")
    assert health.broken and health.run_id == first and health.findings == [FINDING]
    wait_received(received, 1)
    [body] = received
    assert body["event"] == "schedule.failed" and body["app"] == "sales"
    assert (body["schedule"], body["run_id"], body["state"]) == ("fast", first, "failed")
    assert body["findings"] == [FINDING] and body["failures"] == 1
    assert body["link"] == "https://gallery.example/app/sales"
    assert body["report"] == f"https://gallery.example/api/runs/{first}/report.html"
    # the next firing (a retry or the regular one: every second here) runs again (maybe in
    # the tick that read the failure already)...
    queued = result.queued
    if not queued:
        wait_due(cat)
        queued = sched.tick().queued
    [second] = queued
    finish_next_run(cat, "passed")
    result = sched.tick()
    assert result.settled == [("sales", "fast", "passed")] and result.notified == 1
    assert not cat.app_health("sales").broken
    wait_received(received, 2)
    assert received[-1]["event"] == "schedule.recovered" and received[-1]["run_id"] == second
    sched.stop()
    assert cat.list_schedules("sales")[0].last_passed_run_id == second


def test_retry_uses_backoff_before_the_next_regular_firing(cat):
    publish(cat, {"name": "daily", "cron": "@daily"})
    row = cat.list_schedules("sales")[0]
    # make it due now (as if the gallery had been down at its time): one firing
    with cat._write() as s:  # noqa: SLF001 - test setup on the real table
        from sqlalchemy import update

        from nbapps.catalog.models import ScheduleRow
        s.execute(update(ScheduleRow).where(ScheduleRow.id == row.id)
                  .values(next_due_at=datetime.now(timezone.utc)))
    sched = Scheduler(cat, settings(retry_base=2.0))
    [run_id] = sched.tick().queued
    regular_due = cat.list_schedules("sales")[0].next_due_at  # tomorrow's firing
    finish_next_run(cat, "error", [FINDING])
    queued = sched.tick().queued
    after = cat.list_schedules("sales")[0]
    assert after.failures == 1
    if not queued:  # the usual path: the retry waits for its backoff
        assert after.retry_at is not None
        assert after.retry_at < after.next_due_at  # a retry, long before tomorrow
        wait_due(cat)
        queued = sched.tick().queued
    # else the tick that read the failure was slower than the backoff (a loaded CI host) and
    # fired the retry itself; either way a retry leaves the regular firing where it was
    [retry_run] = queued
    assert cat.list_schedules("sales")[0].next_due_at == regular_due
    assert retry_run != run_id
    assert cat.get_run(retry_run).parameters == {}  # the same firing again


def test_a_webhook_that_fails_never_stops_the_scheduler(cat):
    publish(cat, FAST)
    sched = Scheduler(cat, settings(webhook_url="http://127.0.0.1:9/nothing-listens",
                                    webhook_timeout=1.0))
    wait_due(cat)
    sched.tick()
    finish_next_run(cat, "failed", [FINDING])
    result = sched.tick()
    # queued for the webhook's own thread: the tick does not wait for the receiver
    assert result.settled == [("sales", "fast", "failed")] and result.notified == 1
    assert cat.app_health("sales").broken
    deadline = time.monotonic() + 30
    while sched.webhook.failed_attempts == 0:
        assert time.monotonic() < deadline, "the POST was never tried"
        time.sleep(0.02)
    assert sched.webhook.delivered == 0
    sched.stop()


def test_a_firing_the_catalog_refuses_is_a_failure_with_its_finding(cat):
    publish(cat, FAST)
    wait_due(cat)
    # the live version is no longer runnable (e.g. its state changed under the schedule)
    with cat._write() as s:  # noqa: SLF001 - test setup on the real table
        from sqlalchemy import update

        from nbapps.catalog.models import Version
        s.execute(update(Version).values(state="rejected"))
    result = Scheduler(cat, settings()).tick()
    assert result.queued == [] and result.settled == [("sales", "fast", "error")]
    health = cat.app_health("sales")
    assert health.broken and health.findings[0]["code"] == "NBA371"


def test_the_thread_fires_without_being_asked(cat):
    publish(cat, FAST)
    sched = Scheduler(cat, settings(tick=0.1))
    sched.start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not cat.list_runs("sales", origin="schedule"):
            time.sleep(0.05)
    finally:
        sched.stop()
    assert len(cat.list_runs("sales", origin="schedule")) == 1
