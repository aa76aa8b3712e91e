"""JSON API of schedules: an app's schedules and health; pausing and resuming (admins)."""
from __future__ import annotations

from typing import Any, ClassVar

from ..accounts import Permission
from ..errors import NotFound, UsageError
from .authz import Requirement
from .base import APIHandler
from .routes import Op
from .schedule_views import PAUSE, app_schedule_context
from .views import app_visible_to

PAUSE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["paused"],
    "properties": {"paused": {"type": "boolean",
                              "description": "true: the schedule stops firing; false: it "
                                             "fires again from its next time"}},
}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class AppSchedulesHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("The schedules of an app's live version (next time, paused, last run), its "
                  "broken state (findings for its analysts, reviewers and admins) and the "
                  "latest scheduled report."),
    }

    def get(self, slug: str) -> None:
        user = self.require_user()
        detail = self.ctx.catalog.get_app(slug)
        if not app_visible_to(self.ctx, user, detail):
            raise NotFound(f"no app {slug!r}")
        view = app_schedule_context(self.ctx, user, detail)
        health = view["health"]
        self.write_json({
            "app": slug,
            "schedules": [{"name": s.name, "cron": s.cron, "timezone": s.timezone,
                           "parameters": s.parameters, "paused": s.paused,
                           "paused_by": s.paused_by, "runs_here": s.runs_here,
                           "next_at": _iso(s.next_times[0]) if s.next_times else None,
                           "retry_at": _iso(s.retry_at), "failures": s.failures,
                           "last_run_id": s.last_run_id, "run_state": s.run_state}
                          for s in view["schedules"]],
            "broken": bool(health and health.broken),
            "broken_since": _iso(health.since) if health else None,
            "broken_run_id": health.run_id if health else None,
            "findings": list(health.findings) if health else [],
            "latest_report": ({"run_id": view["scheduled_report"]["run_id"],
                               "at": _iso(view["scheduled_report"]["at"]),
                               "url": view["scheduled_report"]["url"]}
                              if view["scheduled_report"] else None),
        })


class ScheduleHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"PATCH": PAUSE}
    docs: ClassVar[dict[str, Op]] = {
        "PATCH": Op("Pause or resume one schedule of an app (admins). Audited as "
                    "schedule.pause / schedule.resume.", body="application/json",
                    body_schema=PAUSE_SCHEMA),
    }

    async def patch(self, slug: str, name: str) -> None:
        user = self.require_user()
        body = self.json_body()
        unknown = sorted(set(body) - {"paused"})
        if unknown or not isinstance(body.get("paused"), bool):
            raise UsageError('send {"paused": true} or {"paused": false}', code="NBA331")
        info = await self.ctx.run(self.ctx.catalog.set_schedule_paused, slug, name,
                                  body["paused"], actor=user.name, ip=self.client_ip())
        self.ctx.changed()
        self.write_json(info.to_dict())
