"""Replicas on PostgreSQL hear of live-version and listing changes at once (LISTEN/NOTIFY).

:mod:`.live_sync` compares the catalog's live versions with what a replica serves every
``live_poll_interval`` seconds (2 s): a decision made on one replica reached the others 0-2 s
later, before their own switch (a runner started and warmed) even began. On PostgreSQL the
catalog's approval and rollback transactions also queue ``NOTIFY nbapps_live_versions``
(:func:`nbapps.catalog.db.announce_live_change`), which PostgreSQL sends on commit only, and
every replica holds one connection that ``LISTEN``\\ s on that channel and runs the same
comparison as soon as a notification comes.

The poll stays, as the safety net: notifications sent while a listener reconnects are lost
(it compares once more after each reconnection). The payload (the app's slug) is informative
only: a replica compares every app, as a poll round does, and its own decisions come back to
it too (a cheap round that finds the switch already under way). SQLite has no notifications:
there the poll is all there is (one machine, so replicas are unusual).

Other changes that gallery listings show (curation, a new submission, a withdrawal) are
announced by the replica that made them, after its commit, on a second channel; the others drop
their cached listings (``cache_seconds``) when they hear it. A replica ignores its own.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from ..catalog.db import CATALOG_CHANNEL, LIVE_CHANNEL
from .periodic import cancel_and_wait

log = logging.getLogger("nbapps.server.live_notify")


def libpq_url(catalog_url: str) -> str | None:
    """The catalog's URL as psycopg takes it, or None when the catalog is not PostgreSQL."""
    url = make_url(catalog_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class LiveNotifier:
    """Listens on :data:`~nbapps.catalog.db.LIVE_CHANNEL` and calls ``on_live_change`` for
    every notification, and once after each reconnection (what was decided while it was
    away); listens on :data:`~nbapps.catalog.db.CATALOG_CHANNEL` and calls
    ``on_catalog_change`` for other replicas' notifications, which :meth:`announce` sends."""

    def __init__(self, catalog: Any, on_live_change: Callable[[], None],
                 on_catalog_change: Callable[[], None], *, run: Callable[..., Any],
                 retry: float = 2.0) -> None:
        conninfo = libpq_url(catalog.url)
        if conninfo is None:
            raise ValueError("catalog notifications need a PostgreSQL catalog")
        self.catalog = catalog
        self.conninfo = conninfo
        self.on_live_change = on_live_change
        self.on_catalog_change = on_catalog_change
        self.run = run  # ServerContext.run: blocking catalog calls on the thread pool
        self.retry = retry
        #: who this replica is in catalog-change payloads (its own come back to it)
        self.sender = secrets.token_hex(6)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.ensure_future(self._listen())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _listen(self) -> None:
        import psycopg

        connected_before = False
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {LIVE_CHANNEL}; LISTEN {CATALOG_CHANNEL}")
                    if connected_before:  # what changed while this one was away
                        self.on_live_change()
                        self.on_catalog_change()
                    connected_before = True
                    async for note in conn.notifies():
                        if note.channel == LIVE_CHANNEL:
                            self.on_live_change()
                        elif note.payload != self.sender:
                            self.on_catalog_change()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poll covers the gap; try again
                log.warning("listening for catalog changes failed (the periodic check "
                            "goes on): %s", exc)
            await asyncio.sleep(self.retry)

    def announce(self) -> None:
        """Tell the other replicas that this one changed what listings show (in the
        background; a failure is logged: their cached listings expire anyway). Any thread may
        call it: the check and run workers report their changes from theirs."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: shutting down
            loop.call_soon_threadsafe(self._send)

    def _send(self) -> None:
        task = asyncio.ensure_future(self.run(self.catalog.announce_change, self.sender))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not tell other replicas of a catalog change (their cached "
                    "listings expire within cache_seconds): %s", task.exception())


__all__ = ["LiveNotifier", "libpq_url"]
