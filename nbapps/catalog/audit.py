"""Append-only audit log: append, list, export as JSON lines. There is no update or delete.

Other repository modules add their events with :func:`append_event` inside their own
transaction, so an action and its audit event commit (or vanish) together.

Every field is bounded, whatever a caller passes: actor, action, target and address are clipped
to their column sizes, text in ``details`` to :data:`MAX_DETAIL_TEXT` characters (a review
comment fits; a megabyte of input does not land in the log).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import CatalogBase
from .models import AuditEventRow, utcnow
from .values import AuditEvent

_MAX = {"actor": 100, "action": 64, "target": 300, "ip": 64}
#: longest text value kept in ``details`` (longer ones are cut and end with "…")
MAX_DETAIL_TEXT = 20_000
#: deepest nesting kept in ``details`` (deeper values become the text "…")
MAX_DETAIL_DEPTH = 8


def _clip(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    return str(value)[: _MAX[field]]


def _jsonable(details: dict[str, Any] | None) -> dict[str, Any]:
    """A JSON-safe, bounded copy of ``details`` (datetimes, paths, enums become strings)."""
    if not details:
        return {}
    return dict(_bounded(json.loads(json.dumps(_bounded(dict(details), 0), default=str)), 0))


def _bounded(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_DETAIL_TEXT else value[:MAX_DETAIL_TEXT] + "\u2026"
    if isinstance(value, dict | list | tuple) and depth >= MAX_DETAIL_DEPTH:
        return "\u2026"
    if isinstance(value, dict):
        return {str(k)[:_MAX["target"]]: _bounded(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_bounded(v, depth + 1) for v in value]
    return value


def append_event(
    session: Session,
    action: str,
    *,
    actor: str,
    target: str = "",
    version_sha256: str | None = None,
    ip: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEventRow:
    """Add an audit event to ``session``'s transaction (flushed, so its id is known)."""
    row = AuditEventRow(
        at=at or utcnow(), actor=_clip(actor, "actor") or "", action=_clip(action, "action") or "",
        target=_clip(target, "target") or "", version_sha256=version_sha256,
        ip=_clip(ip, "ip"), details=_jsonable(details),
    )
    session.add(row)
    session.flush()
    return row


def event_info(row: AuditEventRow) -> AuditEvent:
    return AuditEvent(id=row.id, at=row.at, actor=row.actor, action=row.action,
                      target=row.target, version_sha256=row.version_sha256, ip=row.ip,
                      details=dict(row.details or {}))


class AuditMixin(CatalogBase):
    def audit(
        self,
        action: str,
        *,
        actor: str,
        target: str = "",
        version_sha256: str | None = None,
        ip: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Append one audit event in its own transaction (e.g. ``logout``)."""
        with self._write() as s:
            row = append_event(s, action, actor=actor, target=target,
                               version_sha256=version_sha256, ip=ip, details=details)
            return event_info(row)

    def list_audit(
        self,
        *,
        limit: int = 100,
        before_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
    ) -> list[AuditEvent]:
        """Events newest first; page with ``before_id`` = last id of the previous page."""
        stmt = select(AuditEventRow).order_by(AuditEventRow.id.desc())
        if before_id is not None:
            stmt = stmt.where(AuditEventRow.id < before_id)
        if actor is not None:
            stmt = stmt.where(AuditEventRow.actor == actor)
        if action is not None:
            stmt = stmt.where(AuditEventRow.action == action)
        if target is not None:
            stmt = stmt.where(AuditEventRow.target == target)
        if since is not None:
            stmt = stmt.where(AuditEventRow.at >= since)
        stmt = stmt.limit(max(1, min(int(limit), 10_000)))
        with self._read() as s:
            return [event_info(r) for r in s.scalars(stmt)]

    def iter_audit_jsonl(
        self, *, since: datetime | None = None, until: datetime | None = None, batch: int = 500
    ) -> Iterator[str]:
        """Every event oldest first as one JSON line each (with trailing newline).

        Reads in batches by id (each batch its own short transaction), so a long export never
        holds a transaction open.
        """
        last_id = 0
        while True:
            stmt = (select(AuditEventRow).where(AuditEventRow.id > last_id)
                    .order_by(AuditEventRow.id).limit(batch))
            if since is not None:
                stmt = stmt.where(AuditEventRow.at >= since)
            if until is not None:
                stmt = stmt.where(AuditEventRow.at < until)
            with self._read() as s:
                events = [event_info(r) for r in s.scalars(stmt)]
            if not events:
                return
            for ev in events:
                yield json.dumps(ev.to_dict(), ensure_ascii=False, sort_keys=True) + "\n"
            last_id = events[-1].id

    def export_audit(
        self, out: TextIO, *, since: datetime | None = None, until: datetime | None = None
    ) -> int:
        """Write :meth:`iter_audit_jsonl` to ``out``; return the number of events."""
        n = 0
        for line in self.iter_audit_jsonl(since=since, until=until):
            out.write(line)
            n += 1
        return n
