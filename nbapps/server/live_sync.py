"""Replicas act as one: follow live-version changes made by another gallery process.

An approval or rollback made through this server switches its runners at once
(:meth:`ServerContext.live_changed`) and drops its cached listings (:meth:`ServerContext.changed`).
Another replica on the same catalog learns of it here: every ``interval`` seconds one cheap
catalog query (``{slug: (live version id, sha256)}``, on the thread pool) is compared with

- what this replica saw last time: any difference drops the cached listings, so gallery pages
  show the new live versions within ``interval`` (not the cache's own ``ttl``);
- what the app runtime serves (:meth:`~nbapps.runner.supervisor.Supervisor.served_releases`): an
  app serving another version than the live one is switched the way a local decision switches
  it (:meth:`ServerContext.switch_live`, the runtime's ``refresh``: start the new version, route
  new pages to it, drain the old), or retired when it has no live version.
  An app whose switch is still running (started here or by a local decision) is left to it.

The comparison is with state, not with events, so a missed round, a failed switch or a replica
started mid-change catches up at the next round. Preview slots (``~v<id>``) are not live apps and
are left alone. On PostgreSQL a round also runs as soon as the catalog announces a decision
(:mod:`.live_notify`), so the poll is only the safety net there. A decision made here also
runs a round at once: what the next round compares with must include it, or a change made
elsewhere right after, back to the state seen before, would look like no change (the listings
would keep this replica's decision until their ``ttl``). Rounds run one at a time, for the same
reason: a round that read the catalog earlier must not finish after a later one.
"""
from __future__ import annotations

import asyncio
import logging

from ..previews import is_preview_key
from .context import ServerContext
from .live_notify import LiveNotifier, libpq_url
from .periodic import Periodic, cancel_and_wait

log = logging.getLogger("nbapps.server.live_sync")


class LiveSync:
    """The periodic check described in the module docstring (``interval`` <= 0: off), and on
    PostgreSQL (``notify``) the check on the catalog's announcements of decisions."""

    def __init__(self, ctx: ServerContext, interval: float, *, notify: bool = True) -> None:
        self.ctx = ctx
        self.interval = interval
        self._seen: dict[str, tuple[int, str]] | None = None
        self._rounds = Periodic(interval, self.poll, "checking live versions")
        self._soon: asyncio.Task[None] | None = None
        self._again = False
        #: one round at a time: a round that read the catalog earlier but finished later
        #: would set ``_seen`` back to the older state, and the next change back to that
        #: state would then not refresh the listings
        self._one_round = asyncio.Lock()
        #: rounds done and apps switched because of another replica (for logs and tests)
        self.rounds = 0
        self.switches = 0
        self.notifier: LiveNotifier | None = None
        if notify and libpq_url(ctx.catalog.url) is not None:
            self.notifier = LiveNotifier(ctx.catalog, self.poll_soon, ctx.cache.bump,
                                         run=ctx.run)

    def start(self) -> None:
        self.ctx.on_live_decision = self.poll_soon
        self._rounds.start()
        if self.notifier is not None:
            self.notifier.start()
            self.ctx.announce_change = self.notifier.announce

    async def stop(self) -> None:
        self.ctx.on_live_decision = None
        self.ctx.announce_change = None
        if self.notifier is not None:
            await self.notifier.stop()
        await self._rounds.stop()
        soon, self._soon = self._soon, None
        await cancel_and_wait(soon)

    def poll_soon(self) -> None:
        """A round now, outside the periodic ones (one at a time: an announcement that comes
        during a round gets one more round after it)."""
        if self._soon is not None and not self._soon.done():
            self._again = True
            return
        self._soon = asyncio.ensure_future(self._rounds_now())

    async def _rounds_now(self) -> None:
        while True:
            self._again = False
            try:
                await self.poll()
            except Exception as exc:  # noqa: BLE001 - the periodic round comes anyway
                log.warning("checking live versions failed: %s", exc)
            if not self._again:
                return

    async def poll(self) -> list[str]:
        """One round; returns the slugs whose runners it started switching."""
        async with self._one_round:
            return await self._round()

    async def _round(self) -> list[str]:
        live = await self.ctx.run(self.ctx.catalog.live_versions)
        if self._seen is not None and live != self._seen:
            self.ctx.cache.bump()  # following, not changing: nothing to announce
        self._seen = live
        self.rounds += 1
        runtime = self.ctx.runtime
        served = getattr(runtime, "served_releases", None)
        if served is None or getattr(runtime, "refresh", None) is None:
            return []
        switched = []
        for slug, version in served().items():
            if is_preview_key(slug) or self.ctx.refreshing_now(slug):
                continue
            wanted = live.get(slug)
            if wanted is not None and wanted[1] == version:
                continue
            log.info("app %s: live version changed on another replica (now %s); switching",
                     slug, wanted[0] if wanted else "none",
                     extra={"slug": slug, "version_id": wanted[0] if wanted else None})
            self.switches += 1
            switched.append(slug)
            self.ctx.switch_live(slug)
        return switched
