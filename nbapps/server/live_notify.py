"""Replicas on PostgreSQL tell each other of live-version changes at once (LISTEN/NOTIFY).

:mod:`.live_sync` compares the catalog's live versions with what a replica serves every
``live_poll_interval`` seconds (2 s): a decision made on one replica reached the others 0-2 s
later, before their own switch (a runner started and warmed) even began. On PostgreSQL the
replica that decides (an approval, a rollback) now also sends ``NOTIFY nbapps_live_versions``
once its catalog write is committed, and every replica holds one connection that ``LISTEN``\\ s
on that channel and runs the same comparison as soon as a notification comes.

The poll stays, as the safety net: a notification is lost if the deciding replica dies between
its commit and the ``NOTIFY``, or while a listener reconnects (it compares once more after each
reconnection). The payload (``<sender>:<slug>``) is informative only: a replica ignores its own
notifications and otherwise compares every app, as a poll round does. SQLite has no
notifications: there the poll is all there is (one machine, so replicas are unusual).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from .periodic import cancel_and_wait

log = logging.getLogger("nbapps.server.live_notify")

#: the PostgreSQL channel of live-version changes
CHANNEL = "nbapps_live_versions"


def libpq_url(catalog_url: str) -> str | None:
    """The catalog's URL as psycopg takes it, or None when the catalog is not PostgreSQL."""
    url = make_url(catalog_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class LiveNotifier:
    """Listens on :data:`CHANNEL` and calls ``on_change`` for other replicas' notifications;
    :meth:`announce` sends one for this replica's decisions."""

    def __init__(self, catalog: Any, on_change: Callable[[], None], *,
                 run: Callable[..., Any], retry: float = 2.0) -> None:
        conninfo = libpq_url(catalog.url)
        if conninfo is None:
            raise ValueError("live-version notifications need a PostgreSQL catalog")
        self.catalog = catalog
        self.conninfo = conninfo
        self.on_change = on_change
        self.run = run  # ServerContext.run: blocking catalog calls on the thread pool
        self.retry = retry
        #: who this replica is in payloads (its own notifications come back to it)
        self.sender = secrets.token_hex(6)
        self._task: asyncio.Task[None] | None = None
        #: notifications received from other replicas, connections made (for logs and tests)
        self.received = 0
        self.connections = 0
        self.listening = asyncio.Event()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._listen())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connections += 1
                    self.listening.set()
                    if self.connections > 1:  # what was decided while we were away
                        self.on_change()
                    async for note in conn.notifies():
                        if note.payload.split(":", 1)[0] == self.sender:
                            continue
                        self.received += 1
                        self.on_change()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the poll covers the gap; try again
                log.warning("listening for live-version changes failed (the periodic check "
                            "goes on): %s", exc)
            finally:
                self.listening.clear()
            await asyncio.sleep(self.retry)

    def announce(self, slug: str) -> None:
        """Tell the other replicas that ``slug``'s live version changed (in the background;
        a failure is logged: their poll catches up)."""
        task = asyncio.ensure_future(self.run(self.catalog.notify, CHANNEL,
                                              f"{self.sender}:{slug}"))
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not tell other replicas of a live-version change (their poll "
                    "will): %s", task.exception())


__all__ = ["CHANNEL", "LiveNotifier", "libpq_url"]
