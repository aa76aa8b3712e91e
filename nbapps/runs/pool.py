"""The gallery's pool of run workers: :class:`nbapps.jobs.pool.CheckPool`'s threads, recovery
and clean stop, claiming jobs of kind ``run`` (:mod:`nbapps.catalog.runs`) and running each as a
:class:`.worker.RunJob`. Its own worker count (``c.NbappsServer.run_workers``) lets a batch use
several workers in parallel; the first worker also applies the retention
(``run_keep_days`` / ``run_keep_count`` per app) at start and every ``prune_every`` seconds.

The pool keeps at most one spare run program (:class:`.worker.SpareProgram`: imports, report
exporter and a kernel ready, waiting for its job) while runs are being asked for. A run takes
it; the next one is started at once while at most as many runs are going as the machine has
cores (``spare_busy_max``, default cores + 1), else by the next worker that is done; never more
than one waits. A run does not keep its core busy all the time (it waits on its kernel, on
files, on the gallery), so with every core running a run the spare's start-up fills those
gaps: a batch of 20 on 2 workers took 9.9-10.3 s with the spare allowed then, 12.7-13.3 s
without it (cores busy 1.76-1.82 vs 1.32-1.43 of 2; benchmarks/runs.py, stop 20).

Retention deletes the runs' rows (one catalog transaction), then their blobs that nothing
else names (another job's artifacts, a version's thumbnail: blobs are content-addressed, so two
runs with the same ``result.json`` share one) from the bundle store (:meth:`RunPool.forget_blobs`).
A worker that finds an identical blob already stored does not write it again, and records it
only when its job finishes; so blobs are deleted only while no job (check or run, of any
replica sharing the catalog) is running: otherwise they wait in memory for the next quiet pass
(a gallery stopped meanwhile leaves them in the store, where they harm nothing).

Run programs, spare or not, are forked from the pool's run zygote (:mod:`.forks`,
:mod:`.zygote`: a process that has done the programs' imports once) when ``fork`` is on (the
default); it is started with the first run, let go with the spare after
``spare_idle_seconds`` without runs, started again if it dies, and a program is spawned
whenever it cannot fork.

PDFs are printed on first download (:mod:`.pdf`), not by the workers: :attr:`RunPool.pdfs`.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import sandbox
from ..catalog.jobs import JobInfo
from ..catalog.runs import RUN
from ..errors import NbappsError
from ..jobs.pool import CheckPool
from ..jobs.worker import ConfinedJob
from .forks import Zygote, zygote_rules
from .pdf import RunPdfs
from .worker import RunJob, RunSettings, SpareProgram

log = logging.getLogger("nbapps.runs")

#: after a run zygote failed to start, programs are spawned this long before another try
ZYGOTE_RETRY_SECONDS = 300.0


class RunPool(CheckPool):
    """Worker threads running run jobs."""

    kind = RUN
    label = "run"
    settings: RunSettings

    def __init__(self, settings: RunSettings, catalog: Any, store: Any, *,
                 on_change: Callable[[], None] | None = None) -> None:
        super().__init__(settings, catalog, store, on_change=on_change)
        self._last_prune = 0.0
        #: runs deleted by retention (for metrics and tests)
        self.pruned = 0
        #: the pool's spare program (one at most), guarded by ``_lock``
        self._spare: SpareProgram | None = None
        #: when this pool last started a run (monotonic; 0: never)
        self._last_run = 0.0
        #: blobs of deleted runs not deleted yet (:meth:`forget_blobs`), guarded by ``_lock``
        self._unreferenced: set[str] = set()
        self._forget_lock = threading.Lock()
        #: blobs deleted from the store (for metrics and tests)
        self.blobs_deleted = 0
        #: the pool's run zygote (:mod:`.forks`): started with the first run or spare, let go
        #: with the spare; guarded by ``_zygote_lock``
        self._zygote: Zygote | None = None
        self._zygote_lock = threading.Lock()
        #: when a zygote last failed to start (monotonic; 0: never)
        self._zygote_failed = 0.0
        #: the runs' PDFs, printed on first download
        self.pdfs = RunPdfs(catalog, store, enabled=settings.pdf, timeout=settings.pdf_timeout,
                            forget=self.forget_blobs)

    def _claim(self) -> JobInfo | None:
        # a spare program only while runs are being asked for: a gallery whose apps are never
        # run keeps no idle Python process (nor its folder, nor its kernel) around
        if self.settings.prewarm and self._recently_used():
            if self._busy() < self._busy_max():
                self._ensure_spare()
        else:
            spare = self._take_spare()
            if spare is not None:
                spare.discard()
            if not self._recently_used():
                self._stop_zygote()
        return super()._claim()

    def _busy(self) -> int:
        with self._lock:
            return len(self._running)

    def _busy_max(self) -> int:
        return self.settings.spare_busy_max or (os.cpu_count() or 1) + 1

    def _recently_used(self) -> bool:
        return (self._last_run > 0
                and time.monotonic() - self._last_run < self.settings.spare_idle_seconds)

    def _ensure_spare(self) -> None:
        """The pool's spare program, started if it has none (or it died)."""
        with self._lock:
            old = self._spare
            if old is not None and old.alive():
                return
            self._spare = None
        if old is not None:
            old.discard()
        if self._stopping.is_set():
            return
        try:
            spare = SpareProgram(self.settings, self._stopping, self.zygote())
        except Exception:  # noqa: BLE001 - runs still start cold
            log.warning("run pool: no spare run program", exc_info=True)
            return
        with self._lock:
            if self._spare is None and not self._stopping.is_set():
                self._spare, spare = spare, None
        if spare is not None:  # another worker was quicker, or the pool stops
            spare.discard()

    def _take_spare(self) -> SpareProgram | None:
        with self._lock:
            spare, self._spare = self._spare, None
        return spare

    def _new_job(self, job: JobInfo, version: Any, keep_claim: Callable[[], bool]
                 ) -> ConfinedJob:
        self._last_run = time.monotonic()
        run = RunJob(self.settings, self.store, job, version, keep_claim=keep_claim,
                     stopping=self._stopping)
        run.spare = self._take_spare()
        run.zygote = self.zygote()
        if self.settings.prewarm and self._busy() + 1 < self._busy_max():
            # the next run's program prepares while this one runs, on a core no run uses
            self._ensure_spare()
        return run

    def zygote(self) -> Zygote | None:
        """The pool's run zygote, started when it has none (or it died); None: programs are
        spawned (``fork`` off, the pool stopping, or a start that failed less than
        :data:`ZYGOTE_RETRY_SECONDS` ago)."""
        if not self.settings.fork or self._stopping.is_set():
            return None
        with self._zygote_lock:
            zygote = self._zygote
            if zygote is not None and zygote.alive():
                return zygote
            self._zygote = None
            if zygote is not None:
                log.warning("run zygote pid %s has gone; starting another", zygote.pid)
                zygote.stop()
            if self._zygote_failed and \
                    time.monotonic() - self._zygote_failed < ZYGOTE_RETRY_SECONDS:
                return None
            s = self.settings
            rules = zygote_rules(s.data_dir, s.folder, list(s.protected_paths), s.python) \
                if s.sandbox and sandbox.available() else None
            try:
                zygote = Zygote(s.python, s.folder, rules)
            except OSError as exc:
                log.warning("run pool: no run zygote (%s); run programs are spawned", exc)
                self._zygote_failed = time.monotonic()
                return None
            if not zygote.wait_ready():
                log.warning("run pool: the run zygote pid %s is not ready; run programs are "
                            "spawned", zygote.pid)
                zygote.stop()
                self._zygote_failed = time.monotonic()
                return None
            self._zygote = zygote
            return zygote

    def _stop_zygote(self) -> None:
        with self._zygote_lock:
            zygote, self._zygote = self._zygote, None
        if zygote is not None:
            zygote.stop()

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        spare = self._take_spare()
        if spare is not None:
            spare.discard()
        self._stop_zygote()
        self.pdfs.shutdown()
        printer = sys.modules.get("nbapps.report_pdf")  # only when a PDF was asked for
        if printer is not None:
            printer.shutdown(10.0)

    def _after_recovery(self) -> None:
        self.prune()

    def _idle(self) -> None:
        if time.monotonic() - self._last_prune >= self.settings.prune_every:
            self.prune()
        elif self._unreferenced:
            self._delete_unreferenced()

    def prune(self) -> int:
        """Apply the retention now; returns how many runs were deleted."""
        self._last_prune = time.monotonic()
        s = self.settings
        if s.keep_days is None and s.keep_count is None:
            return 0
        try:
            gone = self.catalog.prune_runs(keep_days=s.keep_days, keep_count=s.keep_count)
        except NbappsError as exc:
            log.warning("run retention not applied: %s", exc.message)
            return 0
        if gone:
            self.pruned += len(gone)
            log.info("run retention: deleted %d run(s)", len(gone))
            self.forget_blobs(sha for run in gone for sha in run.artifacts.values())
        elif self._unreferenced:
            self._delete_unreferenced()
        return len(gone)

    def forget_blobs(self, shas: Iterable[str]) -> int:
        """Delete from the store the blobs of ``shas`` nothing in the catalog names any more
        (call after the catalog commit that dropped their last known reference). Deferred while
        a job is running (module docstring); returns how many blobs were removed now (one
        already gone counts)."""
        with self._lock:
            self._unreferenced.update(str(x) for x in shas)
        return self._delete_unreferenced()

    def _jobs_running(self) -> bool:
        try:
            return bool(self.catalog.count_running_jobs())
        except NbappsError:
            return True

    def _delete_unreferenced(self) -> int:
        with self._forget_lock:
            with self._lock:
                candidates = set(self._unreferenced)
            if not candidates:
                return 0
            try:
                if self.catalog.count_running_jobs():
                    return 0  # one may have found one of these blobs stored: next time
                referenced = self.catalog.referenced_blobs(candidates)
            except NbappsError as exc:
                log.warning("run retention: blobs not deleted: %s", exc.message)
                return 0
            removed: set[str] = set()
            for index, sha in enumerate(sorted(candidates - referenced)):
                if index and index % 25 == 0 and self._jobs_running():
                    break  # a job started meanwhile: the rest waits for the next pass
                try:
                    self.store.delete_blob(sha)
                except Exception as exc:  # noqa: BLE001 - left for the next pass
                    log.warning("run retention: blob %s not deleted: %s", sha, exc)
                    continue
                removed.add(sha)
            deleted = len(removed)
            with self._lock:
                self._unreferenced -= referenced | removed
            if deleted:
                self.blobs_deleted += deleted
                log.info("run retention: deleted %d blob(s) no run uses", deleted)
            return deleted


__all__ = ["RunPool", "RunSettings"]
