"""Usage counters per app per day (views, errors, render time)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..errors import NotFound
from .db import CatalogBase
from .models import App, UsageDaily
from .values import UsagePoint


def _today() -> date:
    return datetime.now(timezone.utc).date()


class UsageMixin(CatalogBase):
    def record_usage(
        self,
        slug: str,
        *,
        views: int = 0,
        errors: int = 0,
        render_ms: float | None = None,
        day: date | None = None,
    ) -> None:
        """Add to today's (UTC) counters of app ``slug`` (one upsert); NotFound NBA302."""
        views, errors = max(0, int(views)), max(0, int(errors))
        render_sum = float(render_ms) if render_ms is not None else 0.0
        render_count = 1 if render_ms is not None else 0
        insert = sqlite_insert if self.dialect == "sqlite" else pg_insert
        with self._write() as s:
            app_id = s.scalar(select(App.id).where(App.slug == slug))
            if app_id is None:
                raise NotFound(f"no app named {slug!r}")
            stmt = insert(UsageDaily).values(
                app_id=app_id, day=day or _today(), views=views, errors=errors,
                render_ms_sum=render_sum, render_count=render_count,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[UsageDaily.app_id, UsageDaily.day],
                set_={
                    "views": UsageDaily.views + stmt.excluded.views,
                    "errors": UsageDaily.errors + stmt.excluded.errors,
                    "render_ms_sum": UsageDaily.render_ms_sum + stmt.excluded.render_ms_sum,
                    "render_count": UsageDaily.render_count + stmt.excluded.render_count,
                },
            )
            s.execute(stmt)
            if views:
                s.execute(update(App).where(App.id == app_id)
                          .values(view_count=App.view_count + views))

    def usage_series(self, slug: str, *, days: int = 30, today: date | None = None
                     ) -> list[UsagePoint]:
        """One point per day for the last ``days`` days (zeros filled), oldest first."""
        days = max(1, min(int(days), 3660))
        end = today or _today()
        start = end - timedelta(days=days - 1)
        with self._read() as s:
            app_id = s.scalar(select(App.id).where(App.slug == slug))
            if app_id is None:
                raise NotFound(f"no app named {slug!r}")
            rows = {r.day: UsagePoint(day=r.day, views=int(r.views), errors=int(r.errors),
                                      render_ms_sum=float(r.render_ms_sum),
                                      render_count=int(r.render_count))
                    for r in s.scalars(select(UsageDaily).where(
                        UsageDaily.app_id == app_id, UsageDaily.day >= start,
                        UsageDaily.day <= end))}
        return [rows.get(d) or UsagePoint(day=d)
                for d in (start + timedelta(days=i) for i in range(days))]
