"""The gallery's bounded pool of check workers over the catalog's durable job queue.

``CheckPool(settings, catalog, store).start()`` starts ``settings.workers`` threads (default: one
per core); each claims the first queued check (:meth:`Catalog.claim_job`), runs it
(:class:`.worker.CheckRun`, one confined subprocess) and records the outcome
(:meth:`Catalog.finish_job`), which moves the version on. A submission wakes an idle worker at
once (:meth:`notify`); otherwise idle workers look at the queue every ``poll_seconds`` (jobs
queued by another replica, expired leases).

Durability (the queue is the ``jobs`` table, so nothing is kept only in memory):

* at start, jobs left ``running`` by a process of this host that no longer runs (a gallery
  killed mid-check) go back to the queue, and so, by any replica, do jobs whose claimer's lease
  expired (:meth:`Catalog.recover_jobs`); leftover check folders and orphaned check processes
  of a killed gallery are removed;
* a clean stop kills the running checks and gives their jobs back to the queue
  (:meth:`Catalog.release_job`), so the next start runs them again;
* then, with ``check_unchecked``, every version recorded without a check gets one
  (:meth:`Catalog.queue_unchecked`), after the people's submissions.

A pool's workers claim jobs as ``<host>/<pid>/<process start>/<pool>`` so that "is its claimer
gone?" can be answered on its host without any shared state.
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from ..catalog.jobs import CHECK, JobInfo
from ..errors import NbappsError
from ..processes import kill_processes
from ..store import BundleStore
from .worker import (
    Abandoned,
    CheckOutcome,
    CheckRun,
    CheckSettings,
    ConfinedJob,
    error_outcome,
    remove_tree,
)

log = logging.getLogger("nbapps.jobs")


def _process_start(pid: int) -> int:
    return int(psutil.Process(pid).create_time() * 1000)


def worker_name() -> str:
    """``<host>/<pid>/<start ms>/<pool>``: the claimer name of one pool's workers."""
    return (f"{socket.gethostname()}/{os.getpid()}/{_process_start(os.getpid())}/"
            f"{secrets.token_hex(3)}")


def claimer_gone(claimed_by: str, host: str | None = None) -> bool:
    """Whether a claimer of this host no longer runs (its process ended, or the pid was
    reused). Claimers of other hosts, and stopped pools of live processes, are left to their
    lease."""
    parts = claimed_by.split("/")
    if len(parts) < 3 or parts[0] != (host or socket.gethostname()):
        return False
    try:
        pid, start = int(parts[1]), int(parts[2])
    except ValueError:
        return False
    try:
        return _process_start(pid) != start
    except psutil.Error:
        return True


class CheckPool:
    """Worker threads running check jobs (see the module docstring).

    Subclasses run other kinds of jobs over the same queue (runs: :class:`nbapps.runs.pool.
    RunPool`): they set :attr:`kind` and :attr:`label` and override :meth:`_new_job`,
    :meth:`_after_recovery` and :meth:`_idle`."""

    #: the job kind this pool claims, and how its threads and logs name it
    kind = CHECK
    label = "check"

    def __init__(self, settings: CheckSettings, catalog: Any, store: BundleStore, *,
                 on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.on_change = on_change
        self.name = worker_name()
        self._stopping = threading.Event()
        self._wake = threading.Condition()
        self._signals = 0
        self._threads: list[threading.Thread] = []
        self._running: dict[int, CheckRun] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        #: checks finished by this pool (for metrics and tests)
        self.finished = 0

    @property
    def queue_max(self) -> int:
        return self.settings.queue_max

    def running(self) -> list[JobInfo]:
        with self._lock:
            return [run.job for run in self._running.values()]

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Recover the queue and start the workers (returns at once; the recovery runs on the
        first worker thread before any job is claimed)."""
        self.settings.folder.mkdir(parents=True, exist_ok=True)
        if self.settings.workers < 1:
            log.info("check pool: no workers here; checks wait for another gallery replica")
            self._ready.set()
            return
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._work, args=(index,), daemon=True,
                                      name=f"nbapps-{self.label}-{index}")
            self._threads.append(thread)
            thread.start()
        log.info("%s pool: %d worker(s)", self.label, len(self._threads),
                 extra={"workers": len(self._threads), "queue_max": self.settings.queue_max})

    def stop(self, timeout: float = 30.0) -> None:
        """Kill the running checks, give their jobs back to the queue, end the threads."""
        self._stopping.set()
        self.notify()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            log.warning("check workers still running at shutdown: %s", alive)
        self._threads = []

    def notify(self) -> None:
        """Wake the idle workers (something was queued)."""
        with self._wake:
            self._signals += 1
            self._wake.notify_all()

    def wait_ready(self, timeout: float = 60.0) -> bool:
        """Until the start-up recovery is done (the server waits for it before it announces
        itself)."""
        return self._ready.wait(timeout)

    # -- the workers ---------------------------------------------------------------------------

    def _work(self, index: int) -> None:
        if index == 0:
            self._recover()
            self._ready.set()
        while not self._ready.wait(0.5):
            if self._stopping.is_set():
                return
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            seen = self._signals
            job = self._claim()
            if job is not None:
                self._run(job)
                continue
            if index == 0 and time.monotonic() - last_sweep > self.settings.lease_seconds:
                last_sweep = time.monotonic()
                self._sweep()
                self._idle()
            with self._wake:
                if self._signals == seen and not self._stopping.is_set():
                    self._wake.wait(self.settings.poll_seconds)

    def _claim(self) -> JobInfo | None:
        try:
            return self.catalog.claim_job(self.name, kinds=(self.kind,),
                                          lease_seconds=self.settings.lease_seconds)
        except NbappsError as exc:
            log.warning("%s pool: cannot read the job queue: %s", self.label, exc.message)
            self._stopping.wait(self.settings.poll_seconds)
            return None

    def _run(self, job: JobInfo) -> None:
        try:
            version = self.catalog.get_version(job.version_id) if job.version_id else None
        except NbappsError as exc:
            version = None
            log.warning("%s %s: version %s unreadable: %s", self.label, job.id, job.version_id,
                        exc.message)
        if version is None:
            self._finish(job, error_outcome("the version of this check no longer exists"))
            return

        def keep_claim() -> bool:
            try:
                return bool(self.catalog.renew_job(job.id, self.name, job.attempts,
                                                   self.settings.lease_seconds))
            except NbappsError:
                return True  # the database is away for a moment: keep working, retry later

        run = self._new_job(job, version, keep_claim)
        with self._lock:
            self._running[job.id] = run
        try:
            outcome = run.run()
        except Abandoned as why:
            log.info("%s %s stopped: %s", self.label, job.id, why)
            if self._stopping.is_set():
                self._release(job)
            return
        except Exception:  # noqa: BLE001 - a worker never dies of one job
            log.exception("%s %s failed unexpectedly", self.label, job.id)
            outcome = error_outcome("the check failed unexpectedly (see the server log)")
        finally:
            with self._lock:
                self._running.pop(job.id, None)
        self._finish(job, outcome)

    def _new_job(self, job: JobInfo, version: Any, keep_claim: Callable[[], bool]
                 ) -> ConfinedJob:
        return CheckRun(self.settings, self.store, job, version, keep_claim=keep_claim,
                        stopping=self._stopping)

    def _after_recovery(self) -> None:
        """Start-up work after the queue was recovered (checks: versions without one)."""
        if self.settings.check_unchecked:
            queued = self.catalog.queue_unchecked()
            if queued:
                log.info("queued a check for %d version(s) recorded without one", queued)
                self._changed()

    def _idle(self) -> None:
        """Periodic work of the first worker while the queue is empty (e.g. retention)."""

    def _finish(self, job: JobInfo, outcome: CheckOutcome) -> None:
        try:
            done = self.catalog.finish_job(job.id, self.name, job.attempts, state=outcome.state,
                                           result=outcome.result, artifacts=outcome.artifacts,
                                           record=outcome.record)
        except NbappsError as exc:
            log.error("%s %s: outcome not recorded: %s", self.label, job.id, exc.message)
            return
        if not done:
            log.info("%s %s: finished after its claim was lost; outcome dropped", self.label,
                     job.id)
            return
        self.finished += 1
        log.info("%s %s of version %s: %s", self.label, job.id, job.version_id, outcome.state,
                 extra={"job": job.id, "version": job.version_id, "state": outcome.state,
                        "seconds": outcome.result.get("seconds")})
        self._changed()

    def _changed(self) -> None:
        """Tell the server the catalog changed (its cached listings); a failure there is
        logged and never ends a worker (its next jobs would wait forever)."""
        if self.on_change is None:
            return
        try:
            self.on_change()
        except Exception:  # noqa: BLE001 - the outcome is recorded; listings expire anyway
            log.exception("%s pool: reporting a catalog change failed", self.label)

    def _release(self, job: JobInfo) -> None:
        try:
            self.catalog.release_job(job.id, self.name, job.attempts)
        except NbappsError as exc:
            log.warning("%s %s not given back to the queue: %s", self.label, job.id, exc.message)

    # -- recovery ------------------------------------------------------------------------------

    def _recover(self) -> None:
        """Start-up: orphans and leftover folders of a killed gallery, stale claims, and the
        versions recorded without a check."""
        try:
            self._kill_orphans()
            for leftover in [*self.settings.folder.iterdir(), *self.settings.temp_folders()]:
                remove_tree(leftover)
            self._sweep()
            self._after_recovery()
        except Exception:  # noqa: BLE001 - the pool still serves what it can
            log.exception("%s pool: start-up recovery failed", self.label)

    def _sweep(self) -> None:
        try:
            requeued = self.catalog.recover_jobs(is_gone=claimer_gone,
                                                 max_attempts=self.settings.max_attempts)
        except NbappsError as exc:
            log.warning("check pool: stale jobs not recovered: %s", exc.message)
            return
        if requeued:
            self.notify()

    def _kill_orphans(self) -> int:
        """Check processes a killed gallery left running: the check program (its cwd is in
        the check folder), its kernels and what they started (in its temp folder)."""
        roots = [str(self.settings.folder.resolve()),
                 *[str(t.resolve()) for t in self.settings.temp_folders()]]
        me = os.getuid() if hasattr(os, "getuid") else None
        found = []
        for proc in psutil.process_iter(["uids", "cwd"]):
            try:
                uids = proc.info.get("uids")
                cwd = proc.info.get("cwd")
            except psutil.Error:
                continue
            if me is not None and uids is not None and uids.real != me:
                continue
            if cwd and any(cwd == root or cwd.startswith(root + os.sep) for root in roots):
                found.append(proc)
        if found:
            log.warning("killing %d check process(es) a previous gallery left running",
                        len(found))
        return kill_processes(found)


__all__ = ["CheckPool", "claimer_gone", "worker_name"]
