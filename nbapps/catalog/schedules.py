"""Schedules of live versions in the catalog: firing once across replicas, outcomes, *broken*.

Rows of ``schedules`` (:class:`~nbapps.catalog.models.ScheduleRow`) are the schedules of each
app's **live** version. :func:`sync_live_schedules` replaces them in the same transaction that
makes another version live (approval, rollback); a schedule an admin paused stays paused when
the new version declares one of the same name (pausing is a decision about the job, not the
code), and so does a *broken* state: the app stays broken until the schedule's first passing
run under the new version (approving a fix does not show that it works; its run does). A
schedule the new version no longer declares is gone, with its broken state.

The scheduler of every gallery replica (:mod:`nbapps.schedules.scheduler`) does, each tick::

    claim_due_schedules  --(conditional UPDATE on the seen next_due_at / retry_at)-->  claimed
    queue_runs(origin="schedule") ; record_schedule_run                              queued
    pending_schedule_runs ; settle_schedule_run  --(conditional on run_state)-->  passed | failed

* **claim**: ``WHERE next_due_at = :seen AND next_due_at <= now`` (or the same on
  ``retry_at``) and no run of the schedule queued or claimed, so of several replicas exactly
  one fires each due time; the claim moves ``next_due_at`` to the next time after *now* (firings
  missed while no gallery ran are coalesced into one). A claim whose replica died before
  recording its run is taken over after ``stale_claim_seconds``.
* **settle**: the outcome of the schedule's run is read once (conditional on
  ``run_state = 'queued'``): passed clears failures and *broken*; failed/error counts a failure,
  marks the app broken with the run's findings and sets ``retry_at`` with exponential backoff
  (``retry_base * 2**(failures-1)``, capped; only while it comes before the next regular
  firing). The replica that settles it sends the notification.

Times are aware UTC.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from ..accounts import Role
from ..errors import NotFound, PermissionDenied
from ..schedules.spec import Schedule, next_times, parse_schedules
from .audit import append_event
from .db import CatalogBase
from .models import App, ScheduleRow, utcnow
from .versions import acting_user

log = logging.getLogger("nbapps.catalog.schedules")

CLAIMED = "claimed"
QUEUED = "queued"
#: run states that end a schedule's run (``lost``: the run was deleted before it was read)
FAILED_STATES = ("failed", "error")
SYSTEM = "system"
MAX_FINDINGS = 50


@dataclass(frozen=True)
class ScheduleInfo:
    """One schedule of an app's live version, detached from the session."""

    id: int
    app: str
    version_id: int
    name: str
    cron: str
    timezone: str
    parameters: dict[str, Any]
    paused: bool
    paused_by: str | None
    paused_at: datetime | None
    next_due_at: datetime | None
    retry_at: datetime | None
    last_due_at: datetime | None
    last_run_id: int | None
    run_state: str | None
    last_passed_run_id: int | None
    failures: int
    broken_since: datetime | None
    broken_run_id: int | None
    findings: list[dict[str, Any]] = field(default_factory=list, compare=False)

    @property
    def schedule(self) -> Schedule:
        return Schedule(self.name, self.cron, self.timezone, dict(self.parameters))

    @property
    def seconds(self) -> bool:
        return self.schedule.seconds

    @property
    def broken(self) -> bool:
        return self.broken_since is not None

    def to_dict(self) -> dict[str, Any]:
        iso = (lambda t: t.isoformat() if t is not None else None)  # noqa: E731
        return {"app": self.app, "name": self.name, "cron": self.cron,
                "timezone": self.timezone, "parameters": dict(self.parameters),
                "version_id": self.version_id, "paused": self.paused,
                "paused_by": self.paused_by, "paused_at": iso(self.paused_at),
                "next_due_at": iso(self.next_due_at), "retry_at": iso(self.retry_at),
                "last_due_at": iso(self.last_due_at), "last_run_id": self.last_run_id,
                "run_state": self.run_state, "last_passed_run_id": self.last_passed_run_id,
                "failures": self.failures, "broken_since": iso(self.broken_since),
                "broken_run_id": self.broken_run_id}


@dataclass(frozen=True)
class AppHealth:
    """Whether an app's scheduled runs fail: *broken* with the failing run's findings."""

    app: str
    broken: bool
    since: datetime | None = None
    schedule: str | None = None
    run_id: int | None = None
    failures: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list, compare=False)


@dataclass(frozen=True)
class ScheduleClaim:
    """A due firing this worker claimed: queue its run, then :meth:`record_schedule_run`."""

    schedule: ScheduleInfo
    worker: str
    due_at: datetime
    retry: bool


@dataclass(frozen=True)
class ScheduleOutcome:
    """The outcome of a schedule's run as settled by this worker (it notifies)."""

    schedule: ScheduleInfo
    run_id: int | None
    state: str
    findings: list[dict[str, Any]]
    #: the app was not broken before this outcome and is now
    became_broken: bool = False
    #: the app was broken before this outcome and this run passed
    recovered: bool = False


def _info(row: ScheduleRow, slug: str) -> ScheduleInfo:
    return ScheduleInfo(
        id=row.id, app=slug, version_id=row.version_id, name=row.name, cron=row.cron,
        timezone=row.timezone, parameters=dict(row.parameters or {}), paused=bool(row.paused),
        paused_by=row.paused_by, paused_at=row.paused_at, next_due_at=row.next_due_at,
        retry_at=row.retry_at, last_due_at=row.last_due_at, last_run_id=row.last_run_id,
        run_state=row.run_state, last_passed_run_id=row.last_passed_run_id,
        failures=int(row.failures or 0), broken_since=row.broken_since,
        broken_run_id=row.broken_run_id,
        findings=[f for f in row.findings or [] if isinstance(f, dict)])


def _next_after(row: ScheduleRow, after: datetime) -> datetime | None:
    try:
        return next_times(Schedule(row.name, row.cron, row.timezone), after, 1)[0]
    except (ValueError, KeyError):  # not a valid schedule any more (never stored as such)
        log.warning("schedule %s of app id %s has an invalid cron %r", row.name, row.app_id,
                    row.cron)
        return None


def _is(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def sync_live_schedules(s: Session, app: App, version_id: int, manifest: Any,
                        now: datetime | None = None) -> list[str]:
    """Replace ``app``'s schedules by those of version ``version_id`` (just made live) in the
    caller's transaction; returns their names. ``manifest`` is the version's gallery-derived
    manifest (its ``schedules`` and contract); schedules with errors are left out (the
    version's check reported them). By name, a schedule keeps its paused flag and its broken
    state (cleared by its first passing run, not by the approval: a fix shows when it runs)."""
    from .runs import version_contract

    now = now or utcnow()
    old = {row.name: row for row in s.execute(
        select(ScheduleRow.name, ScheduleRow.paused, ScheduleRow.paused_by,
               ScheduleRow.paused_at, ScheduleRow.failures, ScheduleRow.broken_since,
               ScheduleRow.broken_run_id, ScheduleRow.findings, ScheduleRow.last_passed_run_id)
        .where(ScheduleRow.app_id == app.id))}
    s.execute(delete(ScheduleRow).where(ScheduleRow.app_id == app.id)
              .execution_options(synchronize_session=False))
    raw = manifest.get("schedules") if isinstance(manifest, dict) else None
    schedules, findings = parse_schedules(raw, version_contract(manifest))
    if any(f.is_error for f in findings):
        log.warning("app %s version id %s: schedule(s) left out: %s", app.slug, version_id,
                    "; ".join(f.message for f in findings if f.is_error))
    for schedule in schedules:
        prev = old.get(schedule.name)
        paused = prev is not None and bool(prev.paused)
        broken = prev is not None and prev.broken_since is not None
        s.add(ScheduleRow(
            app_id=app.id, version_id=version_id, name=schedule.name, cron=schedule.cron,
            timezone=schedule.timezone, parameters=dict(schedule.parameters), paused=paused,
            paused_by=prev.paused_by if paused else None,
            paused_at=prev.paused_at if paused else None,
            next_due_at=next_times(schedule, now, 1)[0],
            failures=int(prev.failures or 0) if broken else 0,
            broken_since=prev.broken_since if broken else None,
            broken_run_id=prev.broken_run_id if broken else None,
            findings=list(prev.findings or []) if broken else [],
            last_passed_run_id=prev.last_passed_run_id if prev is not None else None))
    s.flush()
    return [sch.name for sch in schedules]


class SchedulesMixin(CatalogBase):
    # -- reading -------------------------------------------------------------------------------

    def list_schedules(self, slug: str) -> list[ScheduleInfo]:
        """The schedules of ``slug``'s live version, by name (none for an unknown app)."""
        with self._read() as s:
            rows = s.execute(select(ScheduleRow).join(App, App.id == ScheduleRow.app_id)
                             .where(App.slug == slug).order_by(ScheduleRow.name)).scalars()
            return [_info(r, slug) for r in rows]

    def get_schedule(self, schedule_id: int) -> ScheduleInfo:
        with self._read() as s:
            row = s.execute(select(ScheduleRow, App.slug).join(App, App.id == ScheduleRow.app_id)
                            .where(ScheduleRow.id == int(schedule_id))).first()
            if row is None:
                raise NotFound(f"no schedule with id {schedule_id}")
            return _info(row[0], row[1])

    def app_health(self, slug: str) -> AppHealth:
        """Whether ``slug`` is broken (a scheduled run failed and none passed since)."""
        return self.broken_apps([slug]).get(slug) or AppHealth(app=slug, broken=False)

    def broken_apps(self, slugs: Iterable[str] | None = None) -> dict[str, AppHealth]:
        """The broken apps among ``slugs`` (all when None), in one query: for gallery cards."""
        stmt = (select(ScheduleRow, App.slug).join(App, App.id == ScheduleRow.app_id)
                .where(ScheduleRow.broken_since.is_not(None))
                .order_by(ScheduleRow.broken_since.desc()))
        if slugs is not None:
            wanted = sorted({str(x) for x in slugs})
            if not wanted:
                return {}
            stmt = stmt.where(App.slug.in_(wanted))
        out: dict[str, AppHealth] = {}
        with self._read() as s:
            for row, slug in s.execute(stmt):
                if slug in out:
                    continue
                out[slug] = AppHealth(
                    app=slug, broken=True, since=row.broken_since, schedule=row.name,
                    run_id=row.broken_run_id, failures=int(row.failures or 0),
                    findings=[f for f in row.findings or [] if isinstance(f, dict)])
        return out

    # -- admin ---------------------------------------------------------------------------------

    def set_schedule_paused(self, slug: str, name: str, paused: bool, *, actor: str,
                            ip: str | None = None) -> ScheduleInfo:
        """Pause or resume schedule ``name`` of ``slug`` (admins only, NBA301; NotFound
        NBA302). Resuming fires next at the schedule's next time after now (what was missed
        while paused is not caught up). Audited as ``schedule.pause`` / ``schedule.resume``."""
        now = utcnow()
        with self._write() as s:
            user = acting_user(s, actor)
            if Role(user.role) is not Role.ADMIN:
                raise PermissionDenied("only an admin may pause or resume schedules",
                                       code="NBA301")
            found = s.execute(select(ScheduleRow, App.slug, App.live_version_id)
                              .join(App, App.id == ScheduleRow.app_id)
                              .where(App.slug == slug, ScheduleRow.name == name)
                              .with_for_update()).first()
            if found is None:
                raise NotFound(f"app {slug!r} has no schedule named {name!r}")
            row = found[0]
            if bool(row.paused) != bool(paused):
                if paused:
                    row.paused, row.paused_by, row.paused_at = True, user.name, now
                    row.retry_at = None
                else:
                    row.paused, row.paused_by, row.paused_at = False, None, None
                    row.retry_at = None
                    row.next_due_at = _next_after(row, now)
                append_event(s, "schedule.pause" if paused else "schedule.resume",
                             actor=user.name, target=slug, ip=ip,
                             details={"schedule": name, "version_id": row.version_id})
            s.flush()
            return _info(row, slug)

    # -- the scheduler's protocol --------------------------------------------------------------

    def claim_due_schedules(self, worker: str, *, now: datetime | None = None,
                            allow_seconds: bool = False, limit: int = 50,
                            stale_claim_seconds: float = 300.0) -> list[ScheduleClaim]:
        """Claim the due firings (regular or retry) of unpaused schedules for ``worker``; of
        several workers claiming at once, each firing goes to exactly one. Seconds schedules
        are skipped unless ``allow_seconds``."""
        now = now or utcnow()
        stale = now - timedelta(seconds=stale_claim_seconds)
        free = or_(ScheduleRow.run_state.is_(None),
                   ScheduleRow.run_state.not_in((CLAIMED, QUEUED)),
                   and_(ScheduleRow.run_state == CLAIMED, ScheduleRow.claimed_at < stale))
        stmt = (select(ScheduleRow, App.slug).join(App, App.id == ScheduleRow.app_id)
                .where(ScheduleRow.paused.is_(False), ScheduleRow.version_id == App.live_version_id,
                       or_(ScheduleRow.next_due_at <= now, ScheduleRow.retry_at <= now), free)
                .order_by(ScheduleRow.id).limit(max(1, int(limit))))
        claims: list[ScheduleClaim] = []
        with self._write() as s:
            for row, slug in s.execute(stmt).all():
                if len(row.cron.split()) == 6 and not allow_seconds:
                    continue
                regular = row.next_due_at is not None and row.next_due_at <= now
                due_at = row.next_due_at if regular else row.retry_at
                assert due_at is not None
                new_next = (_next_after(row, max(now, due_at)) if regular
                            else row.next_due_at)
                moved = s.execute(
                    update(ScheduleRow)
                    .where(ScheduleRow.id == row.id, ScheduleRow.paused.is_(False),
                           _is(ScheduleRow.next_due_at, row.next_due_at),
                           _is(ScheduleRow.retry_at, row.retry_at),
                           _is(ScheduleRow.run_state, row.run_state))
                    .values(next_due_at=new_next, retry_at=None, claimed_by=worker[:200],
                            claimed_at=now, run_state=CLAIMED, last_due_at=due_at)
                    .execution_options(synchronize_session=False))
                if moved.rowcount != 1:
                    continue
                s.flush()
                fresh = s.get(ScheduleRow, row.id, populate_existing=True)
                assert fresh is not None
                claims.append(ScheduleClaim(schedule=_info(fresh, slug), worker=worker,
                                            due_at=due_at, retry=not regular))
        return claims

    def record_schedule_run(self, claim: ScheduleClaim, run_id: int | None, *,
                            retry_in: float | None = None) -> bool:
        """After :meth:`claim_due_schedules`: the run queued for ``claim`` (``run_id``), or
        None when it could not be queued for a passing reason (full queue): the firing is
        then retried in ``retry_in`` seconds. False when the claim was lost meanwhile."""
        now = utcnow()
        values: dict[str, Any]
        if run_id is not None:
            values = {"last_run_id": int(run_id), "run_state": QUEUED, "claimed_by": None,
                      "claimed_at": None}
        else:
            values = {"run_state": "skipped", "claimed_by": None, "claimed_at": None,
                      "retry_at": now + timedelta(seconds=float(retry_in or 60.0))}
        with self._write() as s:
            moved = s.execute(
                update(ScheduleRow)
                .where(ScheduleRow.id == claim.schedule.id, ScheduleRow.run_state == CLAIMED,
                       ScheduleRow.claimed_by == claim.worker[:200])
                .values(**values).execution_options(synchronize_session=False))
            return moved.rowcount == 1

    def pending_schedule_runs(self, limit: int = 200) -> list[tuple[int, int]]:
        """``(schedule id, run id)`` of the schedules whose run's outcome was not read yet."""
        stmt = (select(ScheduleRow.id, ScheduleRow.last_run_id)
                .where(ScheduleRow.run_state == QUEUED, ScheduleRow.last_run_id.is_not(None))
                .order_by(ScheduleRow.id).limit(max(1, int(limit))))
        with self._read() as s:
            return [(int(a), int(b)) for a, b in s.execute(stmt)]

    def settle_schedule_run(self, schedule_id: int, run_id: int | None, *, state: str,
                            findings: list[dict[str, Any]] | None = None,
                            claim: ScheduleClaim | None = None, retry_base: float = 60.0,
                            retry_max: float = 3600.0, retries: int = 3,
                            now: datetime | None = None) -> ScheduleOutcome | None:
        """Record the outcome ``state`` of the schedule's run ``run_id`` (``passed``,
        ``failed``, ``error``, ``cancelled`` or ``lost``), once: None when another worker
        settled it (or the schedule was replaced). With ``claim`` instead of a queued run, it
        settles a firing whose run could not be queued at all (``findings`` say why)."""
        now = now or utcnow()
        findings = [f for f in (findings or []) if isinstance(f, dict)][:MAX_FINDINGS]
        with self._write() as s:
            found = s.execute(select(ScheduleRow, App.slug)
                              .join(App, App.id == ScheduleRow.app_id)
                              .where(ScheduleRow.id == int(schedule_id))).first()
            if found is None:
                return None
            row, slug = found
            if claim is not None:
                guard = and_(ScheduleRow.run_state == CLAIMED,
                             ScheduleRow.claimed_by == claim.worker[:200])
            else:
                guard = and_(ScheduleRow.run_state == QUEUED,
                             ScheduleRow.last_run_id == run_id)
            values: dict[str, Any] = {"run_state": state, "claimed_by": None, "claimed_at": None}
            if run_id is not None:
                values["last_run_id"] = run_id
            was_broken = row.broken_since is not None
            became_broken = recovered = False
            if state == "passed":
                values.update(failures=0, retry_at=None, broken_since=None, broken_run_id=None,
                              findings=[], last_passed_run_id=run_id)
                recovered = was_broken
            elif state in FAILED_STATES:
                failures = int(row.failures or 0) + 1
                values.update(failures=failures, broken_since=row.broken_since or now,
                              broken_run_id=run_id, findings=findings)
                retry_at = None
                if failures <= retries and not row.paused:
                    delay = min(retry_base * 2 ** (failures - 1), retry_max)
                    retry_at = now + timedelta(seconds=delay)
                    if row.next_due_at is not None and retry_at >= row.next_due_at:
                        retry_at = None  # the next regular firing comes first
                values["retry_at"] = retry_at
                became_broken = not was_broken
            moved = s.execute(update(ScheduleRow).where(ScheduleRow.id == row.id, guard)
                              .values(**values).execution_options(synchronize_session=False))
            if moved.rowcount != 1:
                return None
            if became_broken or recovered:
                append_event(s, "app.broken" if became_broken else "app.recovered",
                             actor=SYSTEM, target=slug,
                             details={"schedule": row.name, "run_id": run_id, "state": state,
                                      "version_id": row.version_id})
            s.flush()
            fresh = s.get(ScheduleRow, row.id, populate_existing=True)
            assert fresh is not None
            return ScheduleOutcome(schedule=_info(fresh, slug), run_id=run_id, state=state,
                                   findings=findings, became_broken=became_broken,
                                   recovered=recovered)


__all__ = ["AppHealth", "ScheduleClaim", "ScheduleInfo", "ScheduleOutcome", "SchedulesMixin",
           "sync_live_schedules"]
