"""The audit log is append-only (repo API, ORM guard, database triggers) and exports JSONL."""
from __future__ import annotations

import inspect
import io
import json
from datetime import timedelta

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from nbapps.catalog import Catalog
from nbapps.catalog.models import AuditEventRow, Review, utcnow
from nbapps.errors import PermissionDenied
from tests.catalog_helpers import add_users, publish


def test_repository_exposes_no_way_to_change_or_delete_events():
    public = {n for n, _ in inspect.getmembers(Catalog, inspect.isfunction)
              if not n.startswith("_")}
    audit_api = {n for n in public if "audit" in n}
    assert audit_api == {"audit", "list_audit", "iter_audit_jsonl", "export_audit"}
    forbidden = ("delete", "remove", "purge", "truncate", "update_audit", "edit", "clear")
    assert not [n for n in public if n.startswith(forbidden)]


def test_append_list_filter_page(catalog):
    for i in range(5):
        catalog.audit("logout", actor=f"u{i % 2}", target="t", ip="1.1.1.1",
                      details={"i": i, "text": "<b>é</b>"})
    events = catalog.list_audit()
    assert [e.details["i"] for e in events] == [4, 3, 2, 1, 0]
    assert events[0].at.tzinfo is not None
    page2 = catalog.list_audit(limit=2, before_id=events[1].id)
    assert [e.details["i"] for e in page2] == [2, 1]
    assert len(catalog.list_audit(actor="u0")) == 3
    assert catalog.list_audit(action="nope") == []
    assert len(catalog.list_audit(since=utcnow() - timedelta(minutes=5))) == 5
    assert catalog.list_audit(since=utcnow() + timedelta(minutes=5)) == []


def test_details_are_made_json_safe(catalog):
    from datetime import date
    from pathlib import Path

    ev = catalog.audit("x", actor="a", details={"when": date(2025, 1, 2), "p": Path("/a")})
    assert ev.details == {"when": "2025-01-02", "p": "/a"}
    assert catalog.list_audit()[0].details == ev.details


def test_export_json_lines(catalog):
    add_users(catalog)
    publish(catalog, "sales", 1)
    buf = io.StringIO()
    n = catalog.export_audit(buf)
    lines = buf.getvalue().splitlines()
    assert n == len(lines) >= 8
    rows = [json.loads(line) for line in lines]
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert set(rows[0]) == {"id", "at", "actor", "action", "target", "version_sha256", "ip",
                            "details"}
    approve = next(r for r in rows if r["action"] == "version.approve")
    assert approve["actor"] == "rita" and len(approve["version_sha256"]) == 64
    assert list(catalog.iter_audit_jsonl(since=utcnow() + timedelta(days=1))) == []


def test_orm_refuses_changes(catalog):
    catalog.audit("logout", actor="ana")
    with pytest.raises(PermissionDenied), catalog._write() as s:
        row = s.query(AuditEventRow).first()
        row.actor = "mallory"
        s.flush()
    with pytest.raises(PermissionDenied), catalog._write() as s:
        s.delete(s.query(AuditEventRow).first())
        s.flush()
    assert catalog.list_audit()[0].actor == "ana"


@pytest.mark.parametrize("table", ["audit_events", "reviews"])
def test_database_refuses_update_and_delete(catalog, table):
    add_users(catalog)
    publish(catalog, "sales", 1)  # makes a review row and audit events
    model = AuditEventRow if table == "audit_events" else Review
    col = model.actor if table == "audit_events" else model.comment
    for stmt in (update(model).values({col: "x"}), delete(model)):
        with pytest.raises((DBAPIError, IntegrityError)) as err, catalog._write() as s:
            s.execute(stmt)
        assert "append-only" in str(err.value)
    if catalog.dialect == "postgresql":
        with pytest.raises(DBAPIError), catalog._write() as s:
            s.execute(text(f"TRUNCATE {table}"))
    assert len(catalog.list_audit()) >= 3
