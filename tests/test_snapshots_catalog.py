"""Snapshot runs are queued when an opted-in version goes live (approval and rollback), for the
defaults and each variant; never for a version that did not opt in. Catalog only: no kernel."""
from __future__ import annotations

from typing import Any

import pytest

from nbapps.variants import snapshot_parameter_sets
from tests.catalog_helpers import add_users, sha

CONTRACT = [{"name": "region", "type": "str", "default": "EU", "choices": ["EU", "US"]},
            {"name": "year", "type": "int", "default": 2024}]


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def _approve(cat: Any, n: int, manifest: dict[str, Any]) -> int:
    digest = sha(f"snap-{n}")
    sub = cat.submit(slug="snap", title="Snap", description="d", tags=("t",), sha256=digest,
                     manifest={"parameters": CONTRACT, **manifest},
                     store_key=f"{digest[:2]}/{digest}.nbapp", submitter="ana", size=10)
    cat.decide(sub.version.id, "rita", "approve", "ok")
    return int(sub.version.id)


def _snapshot_sets(cat: Any, version_id: int) -> list[dict[str, Any]]:
    runs = cat.list_runs("snap", origin="snapshot")
    return sorted((r.parameters for r in runs if r.version_id == version_id),
                  key=lambda p: (len(p), repr(p)))


def test_going_live_queues_snapshots_of_defaults_and_variants(cat) -> None:
    variants = [{"name": "US 2023", "parameters": {"region": "US", "year": 2023}},
                {"name": "Defaults again", "parameters": {}},  # the same set: queued once
                {"name": "Bad", "parameters": {"region": "LATAM"}}]  # invalid: left out
    v1 = _approve(cat, 1, {"snapshot": True, "variants": variants})
    assert _snapshot_sets(cat, v1) == [{}, {"region": "US", "year": 2023}]
    runs = cat.list_runs("snap", origin="snapshot")
    assert all(r.owner is None and r.state == "queued" for r in runs)

    v2 = _approve(cat, 2, {"variants": variants})  # no snapshot: nothing more queued
    assert _snapshot_sets(cat, v2) == []
    cat.rollback("snap", "rita", "back")  # v1 is live again: fresh snapshots of it
    assert len(_snapshot_sets(cat, v1)) == 4


def test_snapshot_sets_need_an_explicit_true() -> None:
    assert snapshot_parameter_sets({"parameters": CONTRACT, "snapshot": "yes"}) == []
    assert snapshot_parameter_sets({"parameters": CONTRACT}) == []
    assert snapshot_parameter_sets({"parameters": CONTRACT, "snapshot": True}) == [{}]
    assert snapshot_parameter_sets({"legacy": True, "snapshot": True}) == []
