"""What the pages show of schedules: the review page's table (what the reviewer approves), the
app page's panel (next times, paused, latest scheduled report, *broken* with findings for
the app's analysts, reviewers and admins) and the gallery cards' broken badges."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..accounts import Permission
from ..catalog.schedules import AppHealth, ScheduleInfo
from ..errors import NbappsError
from ..schedules import Schedule, next_times, parse_schedules

log = logging.getLogger("nbapps.server")

#: next firing times shown per schedule
SHOWN_TIMES = 3
#: who may pause and resume schedules: admins (curating the gallery is theirs alone)
PAUSE = Permission.CURATE


@dataclass(frozen=True)
class ScheduleView:
    """One schedule as a page shows it."""

    name: str
    cron: str
    timezone: str
    parameters: dict[str, Any]
    next_times: list[datetime] = field(default_factory=list)
    #: False: a seconds schedule on a gallery that does not run those
    runs_here: bool = True
    paused: bool = False
    paused_by: str | None = None
    retry_at: datetime | None = None
    failures: int = 0
    last_run_id: int | None = None
    run_state: str | None = None


def allow_seconds(ctx: Any) -> bool:
    scheduler = getattr(ctx, "scheduler", None)
    return bool(scheduler is not None and scheduler.settings.allow_seconds)


def _times(schedule: Schedule, runs_here: bool, count: int = SHOWN_TIMES) -> list[datetime]:
    if not runs_here:
        return []
    try:
        return next_times(schedule, datetime.now(timezone.utc), count)
    except ValueError:
        return []


def version_schedules(ctx: Any, version: Any
                      ) -> tuple[list[ScheduleView], list[dict[str, Any]]]:
    """The schedules a submitted version declares (from its gallery-derived manifest) with
    their next times, and the findings (as dicts) about the ones that will not run here."""
    from ..catalog.runs import version_contract

    manifest = version.manifest if isinstance(version.manifest, dict) else {}
    raw = manifest.get("schedules")
    if not raw:
        return [], []
    schedules, findings = parse_schedules(raw, version_contract(manifest))
    seconds_ok = allow_seconds(ctx)
    views = [ScheduleView(name=s.name, cron=s.cron, timezone=s.timezone,
                          parameters=dict(s.parameters), runs_here=seconds_ok or not s.seconds,
                          next_times=_times(s, seconds_ok or not s.seconds))
             for s in schedules]
    return views, [f.to_dict() for f in findings if f.is_error or not seconds_ok]


def live_view(ctx: Any, info: ScheduleInfo) -> ScheduleView:
    runs_here = allow_seconds(ctx) or not info.seconds
    times = [info.next_due_at] if (not info.paused and runs_here
                                   and info.next_due_at is not None) else []
    return ScheduleView(name=info.name, cron=info.cron, timezone=info.timezone,
                        parameters=dict(info.parameters), next_times=times, runs_here=runs_here,
                        paused=info.paused, paused_by=info.paused_by, retry_at=info.retry_at,
                        failures=info.failures, last_run_id=info.last_run_id,
                        run_state=info.run_state)


def may_see_findings(ctx: Any, user: Any, detail: Any) -> bool:
    """The app's analysts (its author, the live version's submitter), reviewers and admins."""
    if user is None:
        return False
    if ctx.authorizer.has_permission(user, Permission.REVIEW):
        return True
    live = detail.live
    return user.name == detail.app.author or (live is not None and user.name == live.submitter)


def app_schedule_context(ctx: Any, user: Any, detail: Any) -> dict[str, Any]:
    """Template values of the app page: ``schedules``, ``health`` (findings only for those
    who may see them), ``scheduled_report`` (the latest passed scheduled run) and
    ``can_pause_schedules``."""
    slug = detail.app.slug
    try:
        infos = ctx.catalog.list_schedules(slug)
        health: AppHealth = ctx.catalog.app_health(slug)
        latest = ctx.catalog.latest_run(slug, origin="schedule") if infos or health.broken \
            else None
    except NbappsError as exc:
        log.warning("schedules of %s unavailable: %s", slug, exc.message)
        return {"schedules": [], "health": None, "scheduled_report": None,
                "can_pause_schedules": False, "show_findings": False}
    show = may_see_findings(ctx, user, detail)
    if health.broken and not show:
        health = AppHealth(app=slug, broken=True, since=health.since, schedule=health.schedule)
    report = None
    if latest is not None:
        report = {"run_id": latest.id, "at": latest.finished_at or latest.created_at,
                  "url": ctx.options.url(f"/api/runs/{latest.id}/report.html"),
                  "has_report": "report.html" in latest.artifacts}
    return {"schedules": [live_view(ctx, i) for i in infos], "health": health,
            "scheduled_report": report,
            "can_pause_schedules": ctx.authorizer.has_permission(user, PAUSE),
            "show_findings": show}


def broken_slugs(ctx: Any, slugs: list[str]) -> set[str]:
    """Which of ``slugs`` are broken (gallery cards; never fails the listing)."""
    try:
        return set(ctx.catalog.broken_apps(slugs))
    except NbappsError:
        return set()


__all__ = ["ScheduleView", "app_schedule_context", "broken_slugs", "live_view",
           "may_see_findings", "version_schedules"]
