"""The registry of gallery replicas (``replicas`` table), on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from nbapps.catalog.models import ReplicaRow, utcnow
from nbapps.catalog.replicas import FORGET_AFTER


def _age(cat, replica_id: str, seconds: float) -> None:
    """Make ``replica_id``'s last heartbeat ``seconds`` old (test setup on the real table)."""
    with cat._write() as s:  # noqa: SLF001
        s.execute(update(ReplicaRow).where(ReplicaRow.id == replica_id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_live_replicas_are_the_recent_heartbeats_and_leaving_is_immediate(catalog):
    catalog.replica_heartbeat("a" * 16, "http://10.0.0.1:8866")
    catalog.replica_heartbeat("b" * 16, "http://10.0.0.2:8866")
    assert [r.url for r in catalog.live_replicas(20)] == ["http://10.0.0.1:8866",
                                                          "http://10.0.0.2:8866"]
    # a heartbeat moves the address with it (a replica restarted elsewhere keeps no old one)
    catalog.replica_heartbeat("b" * 16, "http://10.0.0.3:8866")
    assert {r.url for r in catalog.live_replicas(20)} == {"http://10.0.0.1:8866",
                                                          "http://10.0.0.3:8866"}
    # a silent replica is not asked any more, and a stopped one at once
    _age(catalog, "a" * 16, 60)
    assert [r.id for r in catalog.live_replicas(20)] == ["b" * 16]
    catalog.forget_replica("b" * 16)
    assert catalog.live_replicas(20) == []


def test_long_silent_replicas_are_deleted_by_any_heartbeat(catalog):
    catalog.replica_heartbeat("dead" * 4, "http://10.0.0.9:8866")
    _age(catalog, "dead" * 4, FORGET_AFTER.total_seconds() + 5)
    catalog.replica_heartbeat("live" * 4, "http://10.0.0.1:8866")
    with catalog._read() as s:  # noqa: SLF001
        assert [r.id for r in s.query(ReplicaRow)] == ["live" * 4]
