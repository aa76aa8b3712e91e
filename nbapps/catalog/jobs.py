"""The durable job queue of the gallery's worker pool, and the check state of versions.

A job is work the gallery does for someone in the background: today the **check** of a
submitted version (the gallery's own validation run of the stored source, DESIGN.md decision
7); later the runs of approved versions (issue 14) use the same table and the same worker
protocol::

    queued --claim--> running --finish--> passed | failed | error
       ^                 |  \\--release (clean stop) / recover (claimer gone, lease expired)
       |                 |     --> queued again (or error after ``max_attempts``)
       +--- cancel ------+--> cancelled (the version was withdrawn meanwhile)

* **claim** is a conditional update (``WHERE state = 'queued'``; on PostgreSQL the candidate is
  read with ``FOR UPDATE SKIP LOCKED``), so of several workers, in one gallery or in replicas
  sharing the database, exactly one gets a job.
* The claimer holds a **lease** (``lease_expires_at``) that it renews while it works; every
  renew and the finish are conditional on ``claimed_by`` and the claim's ``attempts`` number, so
  a worker whose job was cancelled or taken over learns it at its next renew and a late finish
  of an older claim changes nothing. No job is lost (a crashed claimer's job goes back to the
  queue) and none runs twice at once.
* Finishing a check moves its version in the same transaction (``validating`` → ``submitted`` or
  ``failed``, :func:`nbapps.review.after_check`) and records the gallery-derived facts (manifest,
  thumbnail) the pages read.

The queue order is ``priority`` (lower first: people's submissions 0, background checks of
versions recorded without one 10), then age. Times are UTC.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from .. import review
from ..errors import Conflict, NbappsError, NotFound
from ..review import Action, State
from .audit import append_event
from .db import CatalogBase
from .models import App, Job, User, Version, utcnow
from .values import VersionInfo
from .versions import acting_user, load_version, normalize_tags, set_app_meta

log = logging.getLogger("nbapps.catalog.jobs")

CHECK = "check"
#: every state of a job; the first two are "active"
JOB_STATES = ("queued", "running", "passed", "failed", "error", "cancelled")
ACTIVE = ("queued", "running")
FINISHED = ("passed", "failed", "error")
#: queue order: submissions and re-checks people asked for before background checks
PRIORITY_NOW = 0
PRIORITY_BACKGROUND = 10
#: version states whose versions still get a background check (rejected and withdrawn ones
#: are never reviewed nor run again)
BACKGROUND_CHECK_STATES = (State.SUBMITTED.value, State.APPROVED.value,
                           State.CHANGES_REQUESTED.value)
SYSTEM = "system"


class QueueFull(NbappsError):
    """NBA322: too many jobs already wait (``max_queued``)."""

    code = "NBA322"
    http_status = 429
    exit_code = 1


@dataclass(frozen=True)
class JobInfo:
    """One job, detached from the database session."""

    id: int
    kind: str
    version_id: int | None
    state: str
    priority: int
    owner: str | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    claimed_by: str | None = None
    lease_expires_at: datetime | None = None
    attempts: int = 0
    parameters: dict[str, Any] = field(default_factory=dict, compare=False)
    result: dict[str, Any] = field(default_factory=dict, compare=False)
    artifacts: dict[str, Any] = field(default_factory=dict, compare=False)
    #: 1-based place in the queue while ``queued`` (jobs of the same kind ahead + 1)
    queue_position: int | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        iso = (lambda t: t.isoformat() if t is not None else None)  # noqa: E731
        return {"id": self.id, "kind": self.kind, "version_id": self.version_id,
                "state": self.state, "priority": self.priority, "owner": self.owner,
                "created_at": iso(self.created_at), "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "attempts": self.attempts,
                "queue_position": self.queue_position, "parameters": self.parameters,
                "result": self.result, "artifacts": self.artifacts}


@dataclass(frozen=True)
class CheckRecord:
    """What finishing a check records on its version (besides the job's own result)."""

    #: the version's manifest as the gallery derived it (None: keep the stored one)
    manifest: dict[str, Any] | None = None
    #: the version's thumbnail reference (None: keep the stored one)
    thumbnail: str | None = None


def _info(job: Job, owner: str | None, position: int | None = None) -> JobInfo:
    return JobInfo(
        id=job.id, kind=job.kind, version_id=job.version_id, state=job.state,
        priority=job.priority, owner=owner, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at, claimed_by=job.claimed_by,
        lease_expires_at=job.lease_expires_at, attempts=job.attempts,
        parameters=dict(job.parameters or {}), result=dict(job.result or {}),
        artifacts=dict(job.artifacts or {}), queue_position=position,
    )


def _position(s: Session, job: Job) -> int | None:
    if job.state != "queued":
        return None
    ahead = s.scalar(select(func.count(Job.id)).where(
        Job.state == "queued", Job.kind == job.kind,
        or_(Job.priority < job.priority, and_(Job.priority == job.priority, Job.id < job.id))))
    return int(ahead or 0) + 1


def _load(s: Session, job_id: int) -> JobInfo:
    row = s.execute(select(Job, User.name).outerjoin(User, Job.owner_id == User.id)
                    .where(Job.id == job_id)).first()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    job, owner = row
    return _info(job, owner, _position(s, job))


def count_queued(s: Session, kind: str) -> int:
    return int(s.scalar(select(func.count(Job.id)).where(Job.state == "queued",
                                                         Job.kind == kind)) or 0)


def add_job(s: Session, kind: str, *, version_id: int | None, owner_id: int | None,
            parameters: dict[str, Any] | None = None, priority: int = PRIORITY_NOW,
            max_queued: int | None = None) -> Job:
    """Queue a job inside the caller's transaction; QueueFull NBA322 over ``max_queued``."""
    if max_queued is not None and count_queued(s, kind) >= max_queued:
        raise QueueFull(f"the gallery's {kind} queue is full ({max_queued} waiting); try "
                        "again in a few minutes", details={"retry_after": 60})
    job = Job(kind=kind, version_id=version_id, owner_id=owner_id,
              parameters=dict(parameters or {}), state="queued", priority=priority,
              created_at=utcnow(), attempts=0, result={}, artifacts={})
    s.add(job)
    s.flush()
    return job


def cancel_active(s: Session, version_id: int, kind: str = CHECK) -> int:
    """Cancel the version's queued or running jobs (its worker learns it at its next renew)."""
    result = s.execute(
        update(Job).where(Job.version_id == version_id, Job.kind == kind,
                          Job.state.in_(ACTIVE))
        .values(state="cancelled", finished_at=utcnow(), lease_expires_at=None)
        .execution_options(synchronize_session=False))
    return int(result.rowcount or 0)


class JobsMixin(CatalogBase):
    # -- reading -------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> JobInfo:
        """One job with its queue position; NotFound NBA302."""
        with self._read() as s:
            return _load(s, int(job_id))

    def latest_job(self, version_id: int, kind: str = CHECK) -> JobInfo | None:
        """The newest job of ``kind`` for a version (with its queue position), if any."""
        return self.latest_jobs([version_id], kind).get(int(version_id))

    def latest_jobs(self, version_ids: Iterable[int], kind: str = CHECK) -> dict[int, JobInfo]:
        """The newest job of ``kind`` per version, for a page of versions in two queries."""
        ids = sorted({int(v) for v in version_ids})
        if not ids:
            return {}
        newest = (select(func.max(Job.id)).where(Job.version_id.in_(ids), Job.kind == kind)
                  .group_by(Job.version_id))
        with self._read() as s:
            rows = s.execute(select(Job, User.name).outerjoin(User, Job.owner_id == User.id)
                             .where(Job.id.in_(newest))).all()
            return {job.version_id: _info(job, owner, _position(s, job))
                    for job, owner in rows}

    def count_jobs(self, *, kind: str | None = None, state: str | None = None) -> int:
        stmt = select(func.count(Job.id))
        if kind is not None:
            stmt = stmt.where(Job.kind == kind)
        if state is not None:
            stmt = stmt.where(Job.state == state)
        with self._read() as s:
            return int(s.scalar(stmt) or 0)

    def list_jobs(self, *, kind: str | None = None, version_id: int | None = None,
                  limit: int = 100) -> list[JobInfo]:
        """Jobs, newest first (no queue positions)."""
        stmt = (select(Job, User.name).outerjoin(User, Job.owner_id == User.id)
                .order_by(Job.id.desc()).limit(max(1, min(int(limit), 1000))))
        if kind is not None:
            stmt = stmt.where(Job.kind == kind)
        if version_id is not None:
            stmt = stmt.where(Job.version_id == int(version_id))
        with self._read() as s:
            return [_info(job, owner) for job, owner in s.execute(stmt)]

    def job_artifacts(self, *, after_id: int = 0, limit: int = 1000
                      ) -> list[tuple[int, int | None, dict[str, Any]]]:
        """``(job id, version id, artifacts)`` of the jobs after ``after_id``, oldest first, at
        most ``limit`` (1..1000): pages through every job (``nbapps store check``)."""
        stmt = (select(Job.id, Job.version_id, Job.artifacts).where(Job.id > int(after_id))
                .order_by(Job.id).limit(max(1, min(int(limit), 1000))))
        with self._read() as s:
            return [(int(i), v, dict(a or {})) for i, v, a in s.execute(stmt)]

    # -- queueing ------------------------------------------------------------------------------

    def enqueue_job(self, kind: str, *, version_id: int | None = None, owner: str | None = None,
                    parameters: dict[str, Any] | None = None, priority: int = PRIORITY_NOW,
                    max_queued: int | None = None) -> JobInfo:
        """Queue a job; QueueFull NBA322 when ``max_queued`` jobs of its kind already wait."""
        with self._write() as s:
            owner_id = acting_user(s, owner).id if owner else None
            job = add_job(s, kind, version_id=version_id, owner_id=owner_id,
                          parameters=parameters, priority=priority, max_queued=max_queued)
            return _load(s, job.id)

    def recheck(self, version_id: int, actor: str, *, max_queued: int | None = None,
                ip: str | None = None) -> VersionInfo:
        """A reviewer or admin re-queues the check of a ``failed`` or ``submitted`` version
        (it waits in ``validating`` for the new verdict). NBA301 role, NBA305 state (already
        being checked), NBA322 queue full. Audited as ``version.recheck``."""
        with self._write() as s:
            user = acting_user(s, actor)
            current = load_version(s, int(version_id))
            new_state = review.transition(current.state, Action.RECHECK, user.name, user.role,
                                          current.submitter)
            moved = s.execute(
                update(Version).where(Version.id == current.id,
                                      Version.state == current.state.value)
                .values(state=new_state.value).execution_options(synchronize_session=False))
            if moved.rowcount != 1:
                raise Conflict("this submission changed at the same moment; reload it",
                               code="NBA303")
            cancel_active(s, current.id)
            job = add_job(s, CHECK, version_id=current.id, owner_id=user.id,
                          max_queued=max_queued)
            append_event(s, "version.recheck", actor=user.name, target=current.app_slug,
                         version_sha256=current.sha256, ip=ip,
                         details={"version_id": current.id, "job_id": job.id,
                                  "from": current.state.value})
            s.flush()
            return load_version(s, current.id, refresh=True)

    def queue_unchecked(self, *, priority: int = PRIORITY_BACKGROUND, batch: int = 200) -> int:
        """Queue a check for every version recorded without one (by an earlier nbapps, or
        straight into the catalog) that can still be reviewed or run; a ``submitted`` one waits
        for the verdict in ``validating`` again. Returns how many were queued."""
        total = 0
        while True:
            with self._write() as s:
                has_check = exists().where(Job.version_id == Version.id, Job.kind == CHECK)
                rows = s.execute(select(Version.id, Version.state).where(
                    ~has_check, Version.state.in_(BACKGROUND_CHECK_STATES))
                    .order_by(Version.id).limit(batch)).all()
                for version_id, state in rows:
                    add_job(s, CHECK, version_id=version_id, owner_id=None, priority=priority)
                    new_state = review.check_queued(state)
                    if new_state is not None:
                        s.execute(update(Version).where(Version.id == version_id,
                                                        Version.state == state)
                                  .values(state=new_state.value)
                                  .execution_options(synchronize_session=False))
                if rows:
                    append_event(s, "checks.queue_unchecked", actor=SYSTEM, target="",
                                 details={"versions": [r[0] for r in rows][:100],
                                          "count": len(rows)})
            total += len(rows)
            if len(rows) < batch:
                return total

    # -- the worker protocol -------------------------------------------------------------------

    def claim_job(self, worker: str, *, kinds: Iterable[str] = (CHECK,),
                  lease_seconds: float = 60.0) -> JobInfo | None:
        """Take the first queued job of ``kinds`` (priority, then age) for ``worker``, or None
        when there is none (or another worker took it at the same moment: just ask again)."""
        kinds = tuple(kinds)
        with self._write() as s:
            stmt = (select(Job.id).where(Job.state == "queued", Job.kind.in_(kinds))
                    .order_by(Job.priority, Job.id).limit(1))
            if s.get_bind().dialect.name == "postgresql":
                stmt = stmt.with_for_update(skip_locked=True)
            job_id = s.scalar(stmt)
            if job_id is None:
                return None
            now = utcnow()
            result = s.execute(
                update(Job).where(Job.id == job_id, Job.state == "queued")
                .values(state="running", claimed_by=worker[:200], started_at=now,
                        finished_at=None, lease_expires_at=now + timedelta(seconds=lease_seconds),
                        attempts=Job.attempts + 1)
                .execution_options(synchronize_session=False))
            if result.rowcount != 1:
                return None
            return _load(s, job_id)

    def _claimed(self, job_id: int, worker: str, attempt: int) -> Any:
        return and_(Job.id == int(job_id), Job.state == "running", Job.claimed_by == worker[:200],
                    Job.attempts == int(attempt))

    def renew_job(self, job_id: int, worker: str, attempt: int,
                  lease_seconds: float = 60.0) -> bool:
        """Extend the lease; False when the job is no longer this claim's (cancelled, taken
        over after an expired lease): the worker must stop it and not finish it."""
        with self._write() as s:
            result = s.execute(
                update(Job).where(self._claimed(job_id, worker, attempt))
                .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def release_job(self, job_id: int, worker: str, attempt: int) -> bool:
        """Give a running job back to the queue (a clean stop of its worker); the attempt
        does not count."""
        with self._write() as s:
            result = s.execute(
                update(Job).where(self._claimed(job_id, worker, attempt))
                .values(state="queued", claimed_by=None, lease_expires_at=None, started_at=None,
                        attempts=Job.attempts - 1)
                .execution_options(synchronize_session=False))
            return result.rowcount == 1

    def finish_job(self, job_id: int, worker: str, attempt: int, *, state: str,
                   result: dict[str, Any] | None = None,
                   artifacts: dict[str, Any] | None = None,
                   record: CheckRecord | None = None) -> bool:
        """Record the outcome of a claim (``passed`` / ``failed`` / ``error``); for a check,
        move its version (:func:`nbapps.review.after_check`) and record ``record`` on it, all
        in one transaction. False (nothing changed) when the claim was lost meanwhile."""
        if state not in FINISHED:
            raise ValueError(f"not a finished job state: {state!r}")
        with self._write() as s:
            done = s.execute(
                update(Job).where(self._claimed(job_id, worker, attempt))
                .values(state=state, finished_at=utcnow(), lease_expires_at=None,
                        result=dict(result or {}), artifacts=dict(artifacts or {}))
                .execution_options(synchronize_session=False))
            if done.rowcount != 1:
                return False
            job = s.get(Job, int(job_id))
            assert job is not None
            if job.kind == CHECK and job.version_id is not None:
                _record_check(s, job, state, result or {}, record)
            return True

    def recover_jobs(self, *, is_gone: Callable[[str], bool] = lambda _: False,
                     max_attempts: int = 3) -> list[int]:
        """Put running jobs whose claimer is gone (``is_gone(claimed_by)``, e.g. a process of
        this host that no longer runs) or whose lease expired back in the queue; one that was
        started ``max_attempts`` times ends in ``error`` instead (its version ``failed``).
        Returns the ids re-queued."""
        requeued: list[int] = []
        now = utcnow()
        with self._write() as s:
            running = s.scalars(select(Job).where(Job.state == "running")).all()
            for job in running:
                expired = job.lease_expires_at is None or job.lease_expires_at < now
                if not (expired or (job.claimed_by and is_gone(job.claimed_by))):
                    continue
                claim = self._claimed(job.id, job.claimed_by or "", job.attempts)
                if job.attempts >= max_attempts:
                    message = (f"the check was started {job.attempts} times and never finished "
                               "(the gallery stopped while it ran)")
                    result = {"findings": [_finding("NBA324", message)], "error": message}
                    moved = s.execute(update(Job).where(claim).values(
                        state="error", finished_at=now, lease_expires_at=None, result=result)
                        .execution_options(synchronize_session=False))
                    if moved.rowcount == 1 and job.kind == CHECK and job.version_id is not None:
                        _record_check(s, job, "error", result, None)
                    continue
                moved = s.execute(update(Job).where(claim).values(
                    state="queued", claimed_by=None, lease_expires_at=None, started_at=None)
                    .execution_options(synchronize_session=False))
                if moved.rowcount == 1:
                    requeued.append(job.id)
        if requeued:
            log.info("re-queued %d job(s) whose worker stopped: %s", len(requeued), requeued)
        return requeued


def _finding(code: str, message: str) -> dict[str, Any]:
    from ..findings import Finding

    return Finding(code, message).to_dict()


def _record_check(s: Session, job: Job, state: str, result: dict[str, Any],
                  record: CheckRecord | None) -> None:
    """A finished check's effect on its version (same transaction as the job's finish)."""
    version = s.get(Version, job.version_id)
    if version is None:
        return
    app = s.get(App, version.app_id)
    values: dict[str, Any] = {}
    if record is not None and record.manifest is not None:
        # derived now (a version stored by an earlier nbapps): its title, description and tags
        # were the client's too; the app shows them if this is its live (or only) version
        values["manifest"] = record.manifest
        title = (str(record.manifest.get("title") or "").strip()
                 or (app.slug if app is not None else version.title))[:300]
        description = str(record.manifest.get("description") or "")
        tags = normalize_tags(record.manifest.get("tags") or [])
        values.update(title=title, description=description, tags_text=" ".join(tags))
        if app is not None and (app.live_version_id == version.id or (
                app.live_version_id is None and version.id == s.scalar(
                    select(func.max(Version.id)).where(Version.app_id == app.id)))):
            set_app_meta(s, app, title, description, tags)
    if record is not None and record.thumbnail is not None:
        values["thumbnail"] = record.thumbnail
    new_state = review.after_check(version.state, state == "passed")
    if new_state is not None:
        values["state"] = new_state.value
    if values:
        s.execute(update(Version).where(Version.id == version.id,
                                        Version.state == version.state)
                  .values(**values).execution_options(synchronize_session=False))
    findings = result.get("findings") or []
    slug = app.slug if app is not None else ""
    append_event(s, "version.check", actor=SYSTEM, target=slug, version_sha256=version.sha256,
                 details={"version_id": version.id, "job_id": job.id, "result": state,
                          "errors": sum(1 for f in findings if f.get("severity") == "error"),
                          "to": new_state.value if new_state else version.state})


__all__ = [
    "ACTIVE", "CHECK", "FINISHED", "JOB_STATES", "PRIORITY_BACKGROUND", "PRIORITY_NOW",
    "CheckRecord", "JobInfo", "JobsMixin", "QueueFull", "add_job", "cancel_active",
]
