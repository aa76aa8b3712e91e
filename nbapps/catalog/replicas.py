"""The registry of running gallery replicas (``replicas`` table): who is up, and where.

A replica writes its row when it starts and refreshes it every few seconds
(:meth:`ReplicasMixin.replica_heartbeat`); the others read the fresh rows
(:meth:`ReplicasMixin.live_replicas`) to find the owner of an app kernel they were asked for
(:mod:`nbapps.server.peers`). A replica that stops deletes its row; the row of one that died
is ignored once stale and deleted an hour later by any replica's heartbeat. Only the replica
itself writes its row, so an UPDATE-then-INSERT needs no dialect-specific upsert.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update

from .db import CatalogBase
from .models import ReplicaRow, utcnow

#: rows of replicas silent for this long are deleted (they died without saying so)
FORGET_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class ReplicaInfo:
    id: str
    #: where its peers reach it: ``http://host:port`` (no path: the base URL is the same)
    url: str
    heartbeat_at: datetime


class ReplicasMixin(CatalogBase):
    def replica_heartbeat(self, replica_id: str, url: str) -> None:
        """Record that ``replica_id`` is up at ``url`` (now); forget long-silent replicas."""
        now = utcnow()
        with self._write() as s:
            moved = s.execute(update(ReplicaRow).where(ReplicaRow.id == replica_id)
                              .values(url=url, heartbeat_at=now)
                              .execution_options(synchronize_session=False)).rowcount
            if not moved:
                s.add(ReplicaRow(id=replica_id, url=url, started_at=now, heartbeat_at=now))
            s.execute(delete(ReplicaRow).where(ReplicaRow.heartbeat_at < now - FORGET_AFTER)
                      .execution_options(synchronize_session=False))

    def live_replicas(self, max_age: float) -> list[ReplicaInfo]:
        """Replicas heard of within ``max_age`` seconds, oldest start first."""
        since = utcnow() - timedelta(seconds=max_age)
        stmt = (select(ReplicaRow.id, ReplicaRow.url, ReplicaRow.heartbeat_at)
                .where(ReplicaRow.heartbeat_at >= since)
                .order_by(ReplicaRow.started_at, ReplicaRow.id))
        with self._read() as s:
            return [ReplicaInfo(id=i, url=u, heartbeat_at=h) for i, u, h in s.execute(stmt)]

    def forget_replica(self, replica_id: str) -> None:
        """``replica_id`` stops: its peers stop asking it at once."""
        with self._write() as s:
            s.execute(delete(ReplicaRow).where(ReplicaRow.id == replica_id)
                      .execution_options(synchronize_session=False))


__all__ = ["FORGET_AFTER", "ReplicaInfo", "ReplicasMixin"]
