"""A coroutine the server runs every ``interval`` seconds until it stops (replicas' live-version
poll, Hub session re-checks). A failed round is logged and the next one comes anyway: what these
rounds look at (the catalog, the Hub) may be away for a while."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("nbapps.server")


class Periodic:
    """``action()`` now and then every ``interval`` seconds (``interval`` <= 0: never)."""

    def __init__(self, interval: float, action: Callable[[], Awaitable[object]],
                 what: str) -> None:
        self.interval = interval
        self.action = action
        self.what = what  # for the log line of a failed round ("checking live versions")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _loop(self) -> None:
        while True:
            try:
                await self.action()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                log.warning("%s failed: %s", self.what, exc)
            await asyncio.sleep(self.interval)


async def cancel_and_wait(task: asyncio.Future[object] | None) -> None:
    """Cancel ``task`` (if any) and wait for its end, whatever it raises."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
