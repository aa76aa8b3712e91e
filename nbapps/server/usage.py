"""The proxy's ``observe`` callback: Prometheus metrics at once, catalog usage in batches.

:func:`nbapps.server.proxy.proxy_routes` calls ``observe(slug, kind, status, seconds)`` once per
proxied request, on the event loop. Metrics are updated in place (cheap, in memory). App page
views (kinds "page" and "custom") are counted per app in memory and written to the catalog
(``Catalog.record_usage``) by one thread-pool job per ``flush_interval``, so a burst of viewers
costs one catalog round trip per interval, not one per request, and never blocks the loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..errors import NbappsError

log = logging.getLogger("nbapps.server.usage")

#: request kinds that are an app view (the rendered page); assets/kernels/websockets are not
VIEW_KINDS = ("page", "custom")


def counts_as_view(status: int) -> bool:
    """A rendered page (2xx) or a failed one (5xx). Not a view: redirects (login), 4xx (bad
    parameters, not found) and 503 (the "starting…"/"busy" pages the browser retries, which
    would otherwise count one visit several times)."""
    return 200 <= status < 300 or (status >= 500 and status != 503)


@dataclass
class _Pending:
    views: int = 0
    errors: int = 0
    render_ms: list[float] = field(default_factory=list)


class UsageRecorder:
    """Callable ``observe(slug, kind, status, seconds)`` for the app proxy."""

    def __init__(self, ctx: Any, *, flush_interval: float = 1.0) -> None:
        self.ctx = ctx
        self.flush_interval = flush_interval
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._scheduled = False
        self._tasks: set[asyncio.Future[Any]] = set()

    def __call__(self, slug: str, kind: str, status: int, seconds: float) -> None:
        metrics = self.ctx.metrics
        if metrics is not None and hasattr(metrics, "observe_app"):
            metrics.observe_app(slug, kind, status, seconds)
        if kind not in VIEW_KINDS or not slug or not counts_as_view(status):
            return
        with self._lock:
            p = self._pending.setdefault(slug, _Pending())
            p.views += 1
            if status >= 500:
                p.errors += 1
            else:
                p.render_ms.append(seconds * 1000.0)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread (tests, shutdown): write now
            self._scheduled = False
            self.write(self.take())
            return
        loop.call_later(self.flush_interval, self._flush_soon)

    def take(self) -> dict[str, _Pending]:
        """The counts gathered so far (and forget them)."""
        with self._lock:
            batch, self._pending = self._pending, {}
            self._scheduled = False
        return batch

    def _flush_soon(self) -> None:
        batch = self.take()
        if batch:
            task = asyncio.ensure_future(self.ctx.run(self.write, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Write what is pending now (and wait for writes in flight); call on shutdown."""
        batch = self.take()
        if batch:
            await self.ctx.run(self.write, batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def write(self, batch: dict[str, _Pending]) -> None:
        """Catalog writes for one batch (thread pool). Errors are logged, never raised."""
        catalog = self.ctx.catalog
        for slug, p in batch.items():
            try:
                # render times go one per call (the catalog keeps a sum and a count per day)
                first = True
                for ms in p.render_ms:
                    catalog.record_usage(slug, views=p.views if first else 0,
                                         errors=p.errors if first else 0, render_ms=ms)
                    first = False
                if first:
                    catalog.record_usage(slug, views=p.views, errors=p.errors)
            except NbappsError as err:  # app deleted meanwhile
                log.debug("usage of %s not recorded: %s", slug, err.message)
            except Exception:
                log.exception("usage of %s not recorded", slug)
