"""Background validate/publish jobs of the lab server extension.

Each job runs in its own worker process (``python -m nbapps.labserver.worker``), so a notebook run
never blocks or crashes the Jupyter server, and cancelling is reliable: the worker gets SIGTERM
(it stops its kernel and exits), and whatever is still alive after a grace period, the worker and
the kernels it started, gets SIGKILL.

One job per notebook and kind: a second request for the same notebook with the same content and
options joins the running job; with different content (the notebook was saved again) the old job
is cancelled and replaced. The front-end follows a job by polling its snapshot.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("nbapps.labserver")

KINDS = ("validate", "publish")
ACTIVE = ("queued", "running")


@dataclass
class Job:
    id: str
    kind: str
    path: str  # the contents path the front-end gave
    os_path: str
    fingerprint: str
    options: dict[str, Any]
    state: str = "queued"
    step: str | None = None
    message: str = "Waiting for a free worker"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    joined: int = 0
    replaces: str | None = None
    cancel_requested: bool = False
    pid: int | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _stderr: deque[str] = field(default_factory=lambda: deque(maxlen=40), repr=False)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def snapshot(self) -> dict[str, Any]:
        """What the front-end gets (never the token or other secrets of the spec)."""
        now = time.time()
        end = self.finished or now
        return {
            "id": self.id, "kind": self.kind, "path": self.path, "state": self.state,
            "step": self.step, "message": self.message, "created": self.created,
            "started": self.started, "finished": self.finished,
            "elapsed": round(end - (self.started or end), 3),
            "result": self.result, "error": self.error, "joined": self.joined,
            "replaces": self.replaces, "options": self.options,
        }

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._done.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


class JobManager:
    """Starts, tracks, joins and cancels jobs; at most ``max_parallel`` workers at a time."""

    def __init__(
        self,
        *,
        max_parallel: int = 1,
        retention: float = 1800,
        grace: float = 5.0,
        python: str = sys.executable,
        on_result: Callable[[Job], None] | None = None,
    ) -> None:
        self.max_parallel = max(1, max_parallel)
        self.retention = retention
        self.grace = grace
        self.python = python
        self.on_result = on_result
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots: asyncio.Semaphore | None = None

    # -- queries ---------------------------------------------------------------------------------

    def get(self, job_id: str, kind: str | None = None) -> Job | None:
        job = self._jobs.get(job_id)
        return job if job is not None and (kind is None or job.kind == kind) else None

    def latest(self, kind: str, os_path: str) -> Job | None:
        jobs = [j for j in self._jobs.values() if j.kind == kind and j.os_path == os_path]
        return max(jobs, key=lambda j: j.created) if jobs else None

    def active_jobs(self) -> list[Job]:
        return [j for j in self._jobs.values() if j.active]

    # -- start / join / cancel -------------------------------------------------------------------

    def start(
        self,
        kind: str,
        path: str,
        os_path: Path,
        fingerprint: str,
        options: dict[str, Any],
        secrets: dict[str, Any] | None = None,
    ) -> tuple[Job, bool]:
        """Start a job, or join the running one for the same notebook, content and options.

        ``options`` are shown in snapshots; ``secrets`` (the API token) go only to the worker.
        Returns ``(job, joined)``.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown job kind {kind!r}")
        self._prune()
        running = next((j for j in self._jobs.values() if j.active and j.kind == kind
                        and j.os_path == str(os_path)), None)
        if running is not None and not running.cancel_requested:
            if running.fingerprint == fingerprint and running.options == options:
                running.joined += 1
                log.info("nbapps: %s of %s joins job %s", kind, path, running.id)
                return running, True
            log.info("nbapps: %s changed; job %s replaced", path, running.id)
            self.cancel(running.id)
        job = Job(id=uuid.uuid4().hex, kind=kind, path=path, os_path=str(os_path),
                  fingerprint=fingerprint, options=dict(options),
                  replaces=running.id if running is not None else None)
        self._jobs[job.id] = job
        spec = {"kind": kind, "path": str(os_path), **options, **(secrets or {})}
        self._tasks[job.id] = asyncio.ensure_future(self._run(job, spec))
        return job, False

    def cancel(self, job_id: str) -> Job | None:
        """Ask a job to stop; the snapshot says ``cancelled`` once the worker is gone."""
        job = self._jobs.get(job_id)
        if job is None or not job.active:
            return job
        job.cancel_requested = True
        job.message = "Cancelling…"
        if job.pid is not None:
            asyncio.ensure_future(self._stop_worker(job))
        return job

    async def shutdown(self) -> None:
        """Cancel every job and wait for the workers to end (server shutdown)."""
        for job in self.active_jobs():
            self.cancel(job.id)
        tasks = [t for t in self._tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=self.grace + 5)

    # -- internals -------------------------------------------------------------------------------

    def _prune(self) -> None:
        limit = time.time() - self.retention
        for job_id, job in list(self._jobs.items()):
            if not job.active and (job.finished or 0) < limit:
                del self._jobs[job_id]
                self._tasks.pop(job_id, None)

    def _finish(self, job: Job, state: str, message: str) -> None:
        job.state = state
        job.message = message
        job.finished = time.time()
        job._done.set()
        if state == "succeeded" and self.on_result is not None:
            try:
                self.on_result(job)
            except Exception:  # noqa: BLE001 - bookkeeping must not fail the job
                log.warning("nbapps: recording the result of job %s failed", job.id,
                            exc_info=True)

    async def _run(self, job: Job, spec: dict[str, Any]) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_parallel)
        try:
            async with self._slots:
                if job.cancel_requested:
                    self._finish(job, "cancelled", "Cancelled before it started")
                    return
                await self._run_worker(job, spec)
        except Exception as exc:  # noqa: BLE001 - a job never takes the server down
            log.error("nbapps: job %s crashed: %s", job.id, exc, exc_info=True)
            job.error = {"error": "NBA385", "message": f"the job failed: {type(exc).__name__}"}
            self._finish(job, "failed", "Failed")

    async def _run_worker(self, job: Job, spec: dict[str, Any]) -> None:
        job.state = "running"
        job.started = time.time()
        job.message = "Starting"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            self.python, "-m", "nbapps.labserver.worker",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=str(Path(job.os_path).parent), env=env,
            start_new_session=True,
        )
        job.pid = proc.pid
        log.debug("nbapps: job %s (%s %s) worker pid %s", job.id, job.kind, job.path, proc.pid)
        if job.cancel_requested:  # cancelled while the process was starting
            asyncio.ensure_future(self._stop_worker(job))
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(json.dumps(spec).encode())
        with contextlib.suppress(ConnectionError):
            await proc.stdin.drain()
        proc.stdin.close()
        outcome: dict[str, Any] = {}
        await asyncio.gather(self._read_events(job, proc.stdout, outcome),
                             self._read_stderr(job, proc.stderr))
        code = await proc.wait()
        job.pid = None
        if job.cancel_requested:
            self._finish(job, "cancelled", "Cancelled")
        elif "result" in outcome:
            job.result = outcome["result"]
            self._finish(job, "succeeded", "Done")
        elif "error" in outcome:
            job.error = outcome["error"]
            self._finish(job, "failed", "Failed")
        else:
            tail = " | ".join(list(job._stderr)[-3:])
            log.warning("nbapps: job %s worker exited with %s: %s", job.id, code, tail)
            job.error = {"error": "NBA385",
                         "message": f"the worker process ended unexpectedly (exit code {code})",
                         "hint": "See the Jupyter server log for details."}
            self._finish(job, "failed", "Failed")

    async def _read_events(self, job: Job, stream: asyncio.StreamReader,
                           outcome: dict[str, Any]) -> None:
        while line := await stream.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "progress" and not job.cancel_requested:
                job.step = event.get("step") or job.step
                job.message = event.get("message") or job.message
            elif kind == "result":
                outcome["result"] = event.get("result")
            elif kind == "error":
                outcome["error"] = event.get("error")

    async def _read_stderr(self, job: Job, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if text:
                job._stderr.append(text)
                log.debug("nbapps job %s: %s", job.id[:8], text)

    async def _stop_worker(self, job: Job) -> None:
        pid = job.pid
        if pid is None:
            return
        family = _descendants(pid)  # the kernels, before their parent goes away
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if await job.wait(self.grace):
            survivors = [p for p in family if p.is_running()]
        else:
            survivors = [p for p in family if p.is_running()]
            with contextlib.suppress(psutil.Error):
                survivors.append(psutil.Process(pid))
        for p in survivors:
            with contextlib.suppress(psutil.Error):
                log.info("nbapps: killing leftover process %s of cancelled job %s", p.pid,
                         job.id)
                p.kill()
