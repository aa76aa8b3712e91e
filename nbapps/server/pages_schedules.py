"""The app page's pause / resume buttons for schedules (admins; the API's PATCH as a form)."""
from __future__ import annotations

from typing import ClassVar

from .authz import Requirement
from .base import PageHandler
from .schedule_views import PAUSE


class ScheduleFormHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": PAUSE}

    async def post(self, slug: str, name: str) -> None:
        user = self.require_user()
        paused = self.get_body_argument("paused", "") == "1"
        await self.ctx.run(self.ctx.catalog.set_schedule_paused, slug, name, paused,
                           actor=user.name, ip=self.client_ip())
        self.ctx.changed()
        self.redirect(self.url(f"/app/{slug}#schedules"))
