"""The gallery's scheduler: fires due schedules as runs and follows their outcomes.

One :class:`Scheduler` per gallery process, a daemon thread started and stopped with the
gallery (like the check pool). Every ``tick`` seconds it

1. reads the outcome of each schedule's queued run (:meth:`Catalog.settle_schedule_run`): a
   failure marks the app *broken*, schedules a retry with backoff and notifies the webhook; a
   pass after a failure clears it (and notifies too);
2. claims the due firings (:meth:`Catalog.claim_due_schedules`, a conditional update: with
   several replicas on one catalog each firing is claimed by exactly one) and queues one run
   of the live version per claim (:meth:`Catalog.queue_runs`, ``origin="schedule"``, no
   owner). A full run queue retries the firing later without counting a failure; a run the
   catalog refuses (the app has no approved live version any more, parameters the contract
   refuses) is a failed firing with that finding.

Nothing is kept only in memory: a gallery restarted between two firings continues from the
catalog, and a claim whose gallery died before queueing the run is taken over after a while.
The webhook gets a JSON POST, queued on the tick and delivered (signed, retried) by
:class:`.webhook.WebhookSender`'s own thread, so a slow receiver never delays a firing::

    {"event": "schedule.failed" | "schedule.recovered", "app": "sales", "schedule": "nightly",
     "run_id": 12, "state": "failed", "failures": 1, "retry_at": "...", "findings": [...],
     "link": "https://gallery/app/sales", "report": "https://gallery/api/runs/12/report.html",
     "delivery": "<id>", "sent_at": "..."}
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbappsError, NotFound
from ..findings import Finding
from .webhook import Post, WebhookSender

log = logging.getLogger("nbapps.schedules")

FINISHED = ("passed", "failed", "error", "cancelled")


@dataclass(frozen=True)
class SchedulerSettings:
    """What the gallery's ``schedule_*`` settings say (:class:`nbapps.server.app.NbappsServer`)."""

    #: seconds between two looks at the catalog
    tick: float = 30.0
    #: run 6-field (seconds) schedules (tests)
    allow_seconds: bool = False
    #: first retry after a failed run, in seconds; doubles with every failure
    retry_base: float = 60.0
    #: longest wait before a retry
    retry_max: float = 3600.0
    #: retries after a failure (the next regular firing always runs)
    retries: int = 3
    webhook_url: str = ""
    webhook_timeout: float = 5.0
    #: HMAC-SHA256 key of the webhook's signature header ("" sends none)
    webhook_secret: str = ""
    #: POSTs of one notification before it is given up
    webhook_attempts: int = 4
    #: absolute URL of the gallery for links in notifications ("" gives root-relative links)
    public_url: str = ""
    base_url: str = "/"
    #: runs that may wait in the run queue (None: no limit)
    queue_max: int | None = None
    #: a claim older than this whose run was never recorded is taken over (dead replica)
    stale_claim_seconds: float = 300.0


@dataclass
class TickResult:
    """What one tick did (for logs and tests)."""

    queued: list[int] = field(default_factory=list)
    settled: list[tuple[str, str, str]] = field(default_factory=list)
    notified: int = 0


def _worker_name() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/sched-{secrets.token_hex(3)}"


class Scheduler:
    """See the module docstring. ``tick()`` may also be called directly (tests)."""

    def __init__(self, catalog: Any, settings: SchedulerSettings, *,
                 on_change: Callable[[], None] | None = None,
                 wake_runs: Callable[[], None] | None = None,
                 post: Post | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        self.on_change = on_change
        #: tells this gallery's run workers that runs were queued (else they poll)
        self.wake_runs = wake_runs
        self.name = _worker_name()
        #: the webhook's deliveries (None without a webhook URL)
        self.webhook = (WebhookSender(settings.webhook_url, settings.webhook_timeout,
                                      secret=settings.webhook_secret,
                                      attempts=settings.webhook_attempts, post=post)
                        if settings.webhook_url else None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one tick at a time (thread and direct calls)
        #: ticks done, runs queued and notifications queued for the webhook by this scheduler
        self.ticks = 0
        self.fired = 0
        self.notified = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="nbapps-scheduler",
                                        daemon=True)
        self._thread.start()
        log.info("scheduler started (tick %.1f s)", self.settings.tick)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if self.webhook is not None:
            self.webhook.stop(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a bad tick (database away) must not end it
                log.warning("scheduler tick failed; trying again next tick", exc_info=True)
            self._stop.wait(max(0.05, self.settings.tick))

    # -- one tick ------------------------------------------------------------------------------

    def tick(self) -> TickResult:
        with self._lock:
            result = TickResult()
            self._settle(result)
            if not self._stop.is_set():
                self._fire(result)
            self.ticks += 1
        if result.queued and self.wake_runs is not None:
            self.wake_runs()
        if (result.queued or result.settled) and self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - never the scheduler's end; listings expire
                log.exception("scheduler: reporting a catalog change failed")
        return result

    def _settle(self, result: TickResult) -> None:
        cat, s = self.catalog, self.settings
        for schedule_id, run_id in cat.pending_schedule_runs():
            try:
                run = cat.get_run(run_id)
                state, findings = run.state, list(run.findings)
            except NotFound:
                state, findings = "lost", []
            if state not in FINISHED and state != "lost":
                continue
            outcome = cat.settle_schedule_run(
                schedule_id, run_id, state=state, findings=findings, retry_base=s.retry_base,
                retry_max=s.retry_max, retries=s.retries)
            if outcome is None:
                continue  # another replica read it
            sched = outcome.schedule
            result.settled.append((sched.app, sched.name, state))
            log.log(logging.WARNING if state in ("failed", "error") else logging.INFO,
                    "scheduled run %s of %s/%s: %s", run_id, sched.app, sched.name, state,
                    extra={"app": sched.app, "schedule": sched.name, "run_id": run_id,
                           "state": state})
            if state in ("failed", "error") or outcome.recovered:
                result.notified += self.notify(outcome)

    def _fire(self, result: TickResult) -> None:
        from ..catalog.runs import PRIORITY_SCHEDULE, RunQueueFull

        cat, s = self.catalog, self.settings
        claims = cat.claim_due_schedules(self.name, allow_seconds=s.allow_seconds,
                                         stale_claim_seconds=s.stale_claim_seconds)
        for claim in claims:
            sched = claim.schedule
            try:
                [run] = cat.queue_runs(sched.app, [dict(sched.parameters)], user=None,
                                       version_id=sched.version_id, origin="schedule",
                                       priority=PRIORITY_SCHEDULE, queue_max=s.queue_max)
            except RunQueueFull as exc:
                log.warning("schedule %s/%s not fired: %s; retrying in %.0f s", sched.app,
                            sched.name, exc.message, s.retry_base)
                cat.record_schedule_run(claim, None, retry_in=s.retry_base)
                continue
            except NbappsError as exc:
                if exc.code == "NBA313":  # the database is away: the claim goes stale
                    raise
                finding = Finding(exc.code, f"the scheduled run could not start: {exc.message}")
                outcome = cat.settle_schedule_run(
                    sched.id, None, state="error", findings=[finding.to_dict()], claim=claim,
                    retry_base=s.retry_base, retry_max=s.retry_max, retries=s.retries)
                if outcome is not None:
                    result.settled.append((sched.app, sched.name, "error"))
                    result.notified += self.notify(outcome)
                continue
            if cat.record_schedule_run(claim, run.id):
                self.fired += 1
                result.queued.append(run.id)
                log.info("schedule %s/%s fired: run %s%s", sched.app, sched.name, run.id,
                         " (retry)" if claim.retry else "",
                         extra={"app": sched.app, "schedule": sched.name, "run_id": run.id})

    # -- notifications -------------------------------------------------------------------------

    def link(self, path: str) -> str:
        s = self.settings
        root = s.public_url.rstrip("/") + "/" if s.public_url else s.base_url
        return root + path.lstrip("/")

    def payload(self, outcome: Any) -> dict[str, Any]:
        sched = outcome.schedule
        iso = (lambda t: t.isoformat() if t is not None else None)  # noqa: E731
        return {
            "event": "schedule.recovered" if outcome.state == "passed" else "schedule.failed",
            "app": sched.app, "schedule": sched.name, "run_id": outcome.run_id,
            "state": outcome.state, "failures": sched.failures,
            "retry_at": iso(sched.retry_at), "next_due_at": iso(sched.next_due_at),
            "parameters": dict(sched.parameters), "findings": list(outcome.findings),
            "link": self.link(f"app/{sched.app}"),
            "report": (self.link(f"api/runs/{outcome.run_id}/report.html")
                       if outcome.run_id is not None else None),
        }

    def notify(self, outcome: Any) -> int:
        """Queue the outcome for the webhook, if one is set (1 if queued)."""
        if self.webhook is None:
            return 0
        self.webhook.send(self.payload(outcome))
        self.notified += 1
        return 1


__all__ = ["Scheduler", "SchedulerSettings", "TickResult"]
