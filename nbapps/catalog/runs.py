"""Runs of approved versions (issue 14): the catalog side.

A **run** executes an approved version of an app with a set of parameter values, in the
background, and keeps what it produced (executed notebook, HTML report, recorded values, the
files the notebook declares as outputs). A run is a job of kind ``run`` in the durable job queue
(:mod:`nbapps.catalog.jobs`: same claim / renew / release / finish / recover protocol, so the
run workers of several gallery replicas share it) plus a row in ``runs`` (same id) with the app,
the origin (``api``, ``schedule``, ``snapshot``) and the batch.

Everything that makes a run acceptable is decided here, in the transaction that queues it:

* the app exists (NBA302) and the version is one of its **approved** versions (the live one by
  default; NBA371 otherwise);
* every parameter set passes the version's contract (the gallery-derived one in its manifest,
  the same checks as URL query values, :mod:`nbapps.contract`); a string given for a typed
  parameter is read as the URL query would read it (``"3"`` for an int), so the CLI and
  ``curl`` can send text. One ``ParameterError`` lists every bad value of every set (NBA101-103,
  ``details[i]["set"]`` is the 0-based set);
* the run queue has room for all of them (:class:`RunQueueFull`, NBA370, HTTP 429), and the
  person asking has no more than ``user_max`` runs queued or running with them
  (:class:`TooManyRuns`, NBA383, HTTP 429): one viewer cannot fill the queue others share.

The job's ``result`` holds ``findings``, ``values`` (what the notebook recorded with
:func:`nbapps.record`) and timings; its ``artifacts`` map artifact names (``executed.ipynb``,
``report.html``, ``result.json``, declared output paths) to blob addresses in the bundle store.
Every queue and cancel is an audit event (``run.queue``, ``run.cancel``).
"""
from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ..accounts import Role
from ..contract import ParameterContract, type_name
from ..errors import Conflict, NbappsError, NotFound, ParameterError, PermissionDenied, UsageError
from ..review import State
from .audit import append_event
from .db import CatalogBase
from .jobs import ACTIVE, FINISHED, _position
from .models import App, Job, Run, User, Version, utcnow
from .versions import acting_user

RUN = "run"
ORIGINS = ("api", "schedule", "snapshot")
#: queue order among runs (lower first): people waiting for a result before background work
PRIORITY_API = 0
PRIORITY_SCHEDULE = 5
PRIORITY_SNAPSHOT = 10
SYSTEM = "system"
#: parameter sets one request may queue
MAX_BATCH = 100


class RunQueueFull(NbappsError):
    """NBA370: the run queue has no room for the runs asked for."""

    code = "NBA370"
    http_status = 429
    exit_code = 1


class TooManyRuns(RunQueueFull):
    """NBA383: the person asking has as many runs queued or running as one may."""

    code = "NBA383"


@dataclass(frozen=True)
class RunInfo:
    """One run, detached from the database session."""

    id: int
    app: str
    version_id: int
    version: int
    state: str
    origin: str
    owner: str | None
    parameters: dict[str, Any]
    batch: str | None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: 1-based place in the run queue while ``queued``
    queue_position: int | None = None
    findings: list[dict[str, Any]] = field(default_factory=list, compare=False)
    #: the values the notebook recorded (``nbapps.record``)
    result: dict[str, Any] = field(default_factory=dict, compare=False)
    #: artifact name -> blob address (sha256) in the bundle store
    artifacts: dict[str, str] = field(default_factory=dict, compare=False)
    #: timings and notes of the run (``seconds``, ``cells``, ``confined``, ``notes``, ...)
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    attempts: int = 0
    priority: int = 0

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def finished(self) -> bool:
        return not self.active

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds from start to finish, when both are known."""
        if self.started_at is None or self.finished_at is None:
            return None
        return round((self.finished_at - self.started_at).total_seconds(), 3)

    def to_dict(self) -> dict[str, Any]:
        iso = (lambda t: t.isoformat() if t is not None else None)  # noqa: E731
        return {"id": self.id, "app": self.app, "version_id": self.version_id,
                "version": self.version, "state": self.state, "origin": self.origin,
                "owner": self.owner, "parameters": self.parameters, "batch": self.batch,
                "created_at": iso(self.created_at), "started_at": iso(self.started_at),
                "finished_at": iso(self.finished_at), "seconds": self.seconds,
                "queue_position": self.queue_position, "findings": self.findings,
                "result": self.result, "artifacts": dict(self.artifacts),
                "details": self.details, "attempts": self.attempts}


def _select() -> Any:
    return (select(Job, Run, App.slug, Version.number, User.name)
            .join(Run, Run.job_id == Job.id)
            .join(App, App.id == Run.app_id)
            .join(Version, Version.id == Job.version_id)
            .outerjoin(User, User.id == Job.owner_id))


def _info(s: Session | None, row: Any) -> RunInfo:
    job, run, slug, number, owner = row
    result = dict(job.result or {})
    findings = [f for f in result.pop("findings", None) or [] if isinstance(f, dict)]
    values = result.pop("values", None)
    return RunInfo(
        id=job.id, app=slug, version_id=int(job.version_id), version=int(number),
        state=job.state, origin=run.origin, owner=owner, parameters=dict(job.parameters or {}),
        batch=run.batch, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at,
        queue_position=_position(s, job) if s is not None else None,
        findings=findings, result=dict(values) if isinstance(values, dict) else {},
        artifacts={str(k): str(v) for k, v in (job.artifacts or {}).items()},
        details=result, attempts=job.attempts, priority=job.priority)


def load_run(s: Session, run_id: int) -> RunInfo:
    row = s.execute(_select().where(Job.id == int(run_id), Job.kind == RUN)).first()
    if row is None:
        raise NotFound(f"no run with id {run_id}")
    return _info(s, row)


def count_queued_runs(s: Session) -> int:
    return int(s.scalar(select(func.count(Job.id)).where(Job.state == "queued",
                                                         Job.kind == RUN)) or 0)


def version_contract(manifest: Any) -> ParameterContract:
    """The parameter contract in a version's gallery-derived manifest (empty if none)."""
    if not isinstance(manifest, dict) or manifest.get("legacy"):
        return ParameterContract()
    data = manifest.get("parameters")
    if not data:
        return ParameterContract()
    return ParameterContract.from_dict(data)


def check_parameter_sets(contract: ParameterContract,
                         parameter_sets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every set checked against ``contract`` (text values for typed parameters read as URL
    query values); one ParameterError listing the problems of every set."""
    checked: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    sets = list(parameter_sets)
    for index, values in enumerate(sets):
        if not isinstance(values, Mapping):
            problems.append({"set": index, "name": "", "code": "NBA378",
                             "message": "a parameter set must be an object of name: value"})
            continue
        values_ = dict(values)
        bad: list[dict[str, Any]] = []
        for name, value in values.items():
            param = contract.get(str(name))
            if isinstance(value, str) and param is not None and param.type != "str":
                try:
                    values_[name] = param.parse_text(value)
                except ValueError as exc:
                    del values_[name]
                    bad.append({"set": index, "name": param.name, "code": "NBA102",
                                "message": f"parameter '{param.name}' {exc}"})
        try:
            checked.append(contract.check(values_))
        except ParameterError as exc:
            bad.extend({"set": index, **d} for d in exc.details or [])
        problems.extend(bad)
    if problems:
        prefix = (lambda p: f"set {p['set'] + 1}: " if len(sets) > 1 else "")  # noqa: E731
        messages = [prefix(p) + str(p.get("message", "")) for p in problems]
        message = messages[0] if len(messages) == 1 else \
            f"{len(messages)} parameter problems: " + "; ".join(messages)
        raise ParameterError(message, code=str(problems[0].get("code") or "NBA101"),
                             details=problems)
    return checked


def _find_version(s: Session, app: App, version_id: int | None) -> Version:
    if version_id is None:
        if app.live_version_id is None:
            raise Conflict(f"app '{app.slug}' has no approved live version to run",
                           code="NBA371")
        version = s.get(Version, app.live_version_id)
    else:
        version = s.get(Version, int(version_id))
    if version is None or version.app_id != app.id:
        raise NotFound(f"app '{app.slug}' has no version with id {version_id}")
    if version.state != State.APPROVED.value:
        raise Conflict(f"version {version.number} of '{app.slug}' is {version.state}, not "
                       "approved: only approved versions run", code="NBA371")
    return version


def _same(a: Any, b: Any) -> bool:
    """Parameter equality as the catalog stores values (JSON: no int/float/bool mix-ups)."""
    if type_name(a) != type_name(b) and not (
            {type_name(a), type_name(b)} <= {"int", "float"}):
        return False
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class RunsMixin(CatalogBase):
    # -- queueing ------------------------------------------------------------------------------

    def app_version_for_run(self, slug: str, version: int | None = None) -> int:
        """The id of version number ``version`` of app ``slug`` (the live one for None);
        NotFound NBA302 for an unknown app or number. Approval is checked when queueing."""
        with self._read() as s:
            app = s.scalar(select(App).where(App.slug == slug))
            if app is None:
                raise NotFound(f"no app '{slug}'")
            if version is None:
                if app.live_version_id is None:
                    raise Conflict(f"app '{slug}' has no approved live version to run",
                                   code="NBA371")
                return int(app.live_version_id)
            found = s.scalar(select(Version.id).where(Version.app_id == app.id,
                                                      Version.number == int(version)))
            if found is None:
                raise NotFound(f"app '{slug}' has no version {version}")
            return int(found)

    def queue_runs(self, slug: str, parameter_sets: list[dict[str, Any]], *, user: str | None,
                   version_id: int | None = None, origin: str = "api",
                   priority: int = PRIORITY_API, queue_max: int | None = None,
                   user_max: int | None = None, ip: str | None = None) -> list[RunInfo]:
        """Queue one run per parameter set of ``slug``'s live version (or approved version
        ``version_id``), all or none, in one transaction. ``user=None`` for runs the gallery
        starts itself (schedules, snapshots). Several sets share a batch id.

        NotFound NBA302 (app, version), Conflict NBA371 (not approved), ParameterError
        NBA101-103 (every bad value), UsageError NBA378 (no or too many sets, bad origin),
        RunQueueFull NBA370 (``queue_max`` runs would be exceeded), TooManyRuns NBA383 (``user``
        would have more than ``user_max`` runs queued or running)."""
        if origin not in ORIGINS:
            raise UsageError(f"unknown run origin {origin!r} (one of: {', '.join(ORIGINS)})",
                             code="NBA378")
        sets = list(parameter_sets)
        if not sets or len(sets) > MAX_BATCH:
            raise UsageError(f"give 1 to {MAX_BATCH} parameter sets (got {len(sets)})",
                             code="NBA378")
        with self._write() as s:
            app = s.scalar(select(App).where(App.slug == slug))
            if app is None:
                raise NotFound(f"no app '{slug}'")
            owner = acting_user(s, user) if user else None
            version = _find_version(s, app, version_id)
            checked = check_parameter_sets(version_contract(version.manifest), sets)
            if queue_max is not None:
                waiting = count_queued_runs(s)
                if waiting + len(checked) > queue_max:
                    raise RunQueueFull(
                        f"the run queue is full: {waiting} run(s) waiting, at most {queue_max}"
                        + (f"; this request adds {len(checked)}" if len(checked) > 1 else "")
                        + "; try again in a few minutes",
                        details={"queue_length": waiting, "queue_max": queue_max,
                                 "retry_after": 60})
            if owner is not None and user_max is not None:
                mine = int(s.scalar(select(func.count(Job.id)).where(
                    Job.kind == RUN, Job.owner_id == owner.id, Job.state.in_(ACTIVE))) or 0)
                if mine + len(checked) > user_max:
                    raise TooManyRuns(
                        f"you have {mine} run(s) queued or running; at most {user_max} at a "
                        "time" + (f" (this request adds {len(checked)})" if len(checked) > 1
                                  else "") + "; wait for them or cancel some",
                        details={"yours": mine, "user_max": user_max, "retry_after": 30})
            batch = secrets.token_hex(8) if len(checked) > 1 else None
            now = utcnow()
            ids = []
            for values in checked:
                job = Job(kind=RUN, version_id=version.id,
                          owner_id=owner.id if owner else None, parameters=values,
                          state="queued", priority=int(priority), created_at=now, attempts=0,
                          result={}, artifacts={})
                s.add(job)
                s.flush()
                s.add(Run(job_id=job.id, app_id=app.id, origin=origin, batch=batch))
                ids.append(job.id)
                append_event(s, "run.queue", actor=owner.name if owner else SYSTEM,
                             target=app.slug, version_sha256=version.sha256, ip=ip,
                             details={"run_id": job.id, "version_id": version.id,
                                      "origin": origin, "batch": batch,
                                      "parameters": values})
            s.flush()
            return [load_run(s, i) for i in ids]

    # -- reading -------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> RunInfo:
        """One run with its queue position; NotFound NBA302."""
        with self._read() as s:
            return load_run(s, run_id)

    def list_runs(self, slug: str, *, origin: str | None = None, limit: int = 50,
                  batch: str | None = None) -> list[RunInfo]:
        """The app's runs, newest first (queued ones with their queue position); NotFound
        NBA302 for an unknown app."""
        with self._read() as s:
            app_id = s.scalar(select(App.id).where(App.slug == slug))
            if app_id is None:
                raise NotFound(f"no app '{slug}'")
            stmt = (_select().where(Run.app_id == app_id).order_by(Job.id.desc())
                    .limit(max(1, min(int(limit), 1000))))
            if origin is not None:
                stmt = stmt.where(Run.origin == origin)
            if batch is not None:
                stmt = stmt.where(Run.batch == batch)
            return [_info(s, row) for row in s.execute(stmt).all()]

    def latest_run(self, slug: str, *, origin: str | None = None,
                   parameters: dict[str, Any] | None = None,
                   states: Iterable[str] = ("passed",)) -> RunInfo | None:
        """The newest run of ``slug`` in one of ``states`` (of ``origin``, with exactly these
        ``parameters`` when given), or None."""
        states = tuple(states)
        with self._read() as s:
            app_id = s.scalar(select(App.id).where(App.slug == slug))
            if app_id is None:
                return None
            before: int | None = None
            while True:
                stmt = (_select().where(Run.app_id == app_id, Job.state.in_(states))
                        .order_by(Job.id.desc()).limit(200))
                if origin is not None:
                    stmt = stmt.where(Run.origin == origin)
                if before is not None:
                    stmt = stmt.where(Job.id < before)
                rows = s.execute(stmt).all()
                for row in rows:
                    job = row[0]
                    if parameters is None or (
                            set(job.parameters or {}) == set(parameters)
                            and all(_same(job.parameters[k], parameters[k])
                                    for k in parameters)):
                        return _info(s, row)
                if len(rows) < 200:
                    return None
                before = rows[-1][0].id

    def count_running_jobs(self) -> int:
        """Jobs (checks and runs, of every replica) running now."""
        with self._read() as s:
            return int(s.scalar(select(func.count(Job.id)).where(Job.state == "running"))
                       or 0)

    def count_runs(self, *, state: str | None = None) -> int:
        stmt = select(func.count(Job.id)).where(Job.kind == RUN)
        if state is not None:
            stmt = stmt.where(Job.state == state)
        with self._read() as s:
            return int(s.scalar(stmt) or 0)

    # -- cancelling ----------------------------------------------------------------------------

    def cancel_run(self, run_id: int, *, user: str | None,
                   ip: str | None = None) -> RunInfo:
        """Cancel a queued or running run (its worker stops it at its next lease renewal).
        Only its owner or an admin (``user=None``: the gallery itself). PermissionDenied
        NBA376, Conflict NBA377 when it has already finished."""
        with self._write() as s:
            run = load_run(s, run_id)
            actor = acting_user(s, user) if user else None
            if actor is not None and actor.name != run.owner and \
                    Role(actor.role) < Role.ADMIN:
                raise PermissionDenied("only the run's owner or an admin may cancel it",
                                       code="NBA376")
            moved = s.execute(
                update(Job).where(Job.id == run.id, Job.state.in_(ACTIVE))
                .values(state="cancelled", finished_at=utcnow(), lease_expires_at=None)
                .execution_options(synchronize_session=False))
            if moved.rowcount != 1:
                raise Conflict(f"run {run.id} has already finished ({run.state})",
                               code="NBA377")
            append_event(s, "run.cancel", actor=actor.name if actor else SYSTEM,
                         target=run.app, ip=ip,
                         details={"run_id": run.id, "from": run.state, "owner": run.owner})
            s.flush()
            s.expire_all()
            return load_run(s, run.id)

    # -- artifacts made later ------------------------------------------------------------------

    def add_run_artifact(self, run_id: int, name: str, sha: str) -> str:
        """Record artifact ``name`` (blob ``sha``) on the finished run ``run_id`` (its PDF,
        printed on first download: :mod:`nbapps.runs.pdf`). The first one recorded stays:
        returns the address now recorded under ``name`` (``sha`` or the one before).
        NotFound NBA302 when the run is gone; Conflict NBA377 while it has not finished."""
        with self._write() as s:
            job = s.scalars(select(Job).where(Job.id == int(run_id), Job.kind == RUN)
                            .with_for_update()).first()
            if job is None:
                raise NotFound(f"no run with id {run_id}")
            if job.state in ACTIVE:
                raise Conflict(f"run {run_id} has not finished ({job.state})", code="NBA377")
            artifacts = dict(job.artifacts or {})
            if name in artifacts:
                return str(artifacts[name])
            artifacts[name] = str(sha)
            job.artifacts = artifacts  # a new dict: the JSON column sees the change
            return str(sha)

    # -- retention -----------------------------------------------------------------------------

    def prune_runs(self, *, keep_days: float | None = None, keep_count: int | None = None,
                   slug: str | None = None, now: datetime | None = None) -> list[RunInfo]:
        """Delete finished runs older than ``keep_days`` or beyond the newest ``keep_count``
        finished runs of their app (per app; of ``slug`` only when given). Returns the deleted
        runs (their artifacts tell the caller which blobs may now be unreferenced)."""
        if keep_days is None and keep_count is None:
            return []
        done = (*FINISHED, "cancelled")
        now = now or utcnow()
        with self._write() as s:
            apps = select(Run.app_id).distinct()
            if slug is not None:
                apps = select(App.id).where(App.slug == slug)
            doomed: list[Any] = []
            for app_id in s.scalars(apps).all():
                rows = s.execute(_select().where(Run.app_id == app_id, Job.state.in_(done))
                                 .order_by(Job.id.desc())).all()
                for index, row in enumerate(rows):
                    job = row[0]
                    old = keep_days is not None and job.created_at < now - timedelta(
                        days=float(keep_days))
                    extra = keep_count is not None and index >= int(keep_count)
                    if old or extra:
                        doomed.append(row)
            gone = [_info(None, row) for row in doomed]
            ids = [r.id for r in gone]
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                s.execute(delete(Run).where(Run.job_id.in_(chunk)))
                s.execute(delete(Job).where(Job.id.in_(chunk)))
            return gone

    def referenced_blobs(self, shas: Iterable[str]) -> set[str]:
        """Which of ``shas`` some job (check or run) still records as an artifact, or some
        version names as its thumbnail (``blob:<sha>.png``)."""
        wanted = {str(x) for x in shas}
        if not wanted:
            return set()
        refs = sorted(f"blob:{sha}.png" for sha in wanted)
        found: set[str] = set()
        with self._read() as s:
            for start in range(0, len(refs), 500):
                found.update(str(t)[5:69] for t in s.scalars(
                    select(Version.thumbnail).where(Version.thumbnail.in_(
                        refs[start:start + 500]))).all())
        after = 0
        while True:
            page = self.job_artifacts(after_id=after)  # type: ignore[attr-defined]
            for job_id, _version, artifacts in page:
                after = job_id
                found.update(v for v in artifacts.values() if v in wanted)
            if len(page) < 1000:
                return found


__all__ = ["MAX_BATCH", "ORIGINS", "PRIORITY_API", "PRIORITY_SCHEDULE", "PRIORITY_SNAPSHOT",
           "RUN", "RunInfo", "RunQueueFull", "RunsMixin", "check_parameter_sets",
           "load_run", "version_contract"]
