"""``nbapps store check``: does the bundle store hold every object the catalog names?

The catalog names objects of the store in three places: each version's source (the source
object its derived manifest records, and the key the version was stored under, a legacy archive
for versions of earlier nbapps), each version's thumbnail blob (``blob:<sha>.png``) and each
job's artifacts (``{name: sha}`` blobs: reports, executed notebooks, contracts). Each object is
read back and checked against its address with the store's own rule
(:meth:`~nbapps.store.BundleStore.matches_key`). A finding is coded: NBA315 missing, NBA316
other bytes than its address says, NBA312 not readable (or not a store key at all).

Objects are read in a few threads (object stores answer one request at a time per
connection); nothing is written.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import NbappsError, NotFound
from .store import BundleStore, StoreError

log = logging.getLogger("nbapps.store")

_SHA_RE = re.compile(r"[0-9a-f]{64}")
MISSING, MISMATCH, UNREADABLE = "NBA315", "NBA316", "NBA312"


@dataclass(frozen=True)
class StoreFinding:
    code: str
    key: str
    message: str
    #: what in the catalog names the object ("version 3 (sales v2) source", "job 7 report")
    refs: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "key": self.key, "message": self.message,
                "refs": list(self.refs)}


@dataclass
class StoreCheckReport:
    store: str
    objects: int = 0
    ok: int = 0
    bytes_read: int = 0
    versions: int = 0
    jobs: int = 0
    seconds: float = 0.0
    findings: list[StoreFinding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def count(self, code: str) -> int:
        return sum(1 for f in self.findings if f.code == code)

    def summary(self) -> str:
        return (f"{self.objects} object(s) named by {self.versions} version(s) and {self.jobs} "
                f"job(s) in {self.store}: {self.ok} ok, {self.count(MISSING)} missing, "
                f"{self.count(MISMATCH)} not what their address says, "
                f"{self.count(UNREADABLE)} unreadable ({self.bytes_read} bytes read in "
                f"{self.seconds:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "objects": self.objects, "ok": self.ok,
                "versions": self.versions, "jobs": self.jobs, "bytes_read": self.bytes_read,
                "seconds": round(self.seconds, 3), "clean": self.clean,
                "findings": [f.to_dict() for f in self.findings]}


def referenced_keys(catalog: Any) -> tuple[dict[str, list[str]], int, int]:
    """``{store key: [what names it, ...]}`` over the whole catalog, with the numbers of
    versions and jobs read. A reference that is not a store key is kept under its own text
    (reported as NBA312)."""
    from .jobs.artifacts import parse_thumbnail_ref
    from .jobs.source import source_ref

    refs: dict[str, list[str]] = {}
    versions = jobs = 0
    for version in all_versions(catalog):
        versions += 1
        name = f"version {version.id} ({version.app_slug} v{version.number})"
        sha, key = source_ref(version)
        _add(refs, key or BundleStore.key_for(sha), f"{name} source")
        own = getattr(version, "store_key", None)
        if own and own != key:
            _add(refs, own, f"{name} stored archive")
        thumb = parse_thumbnail_ref(version.thumbnail)
        if thumb:
            _add(refs, BundleStore.blob_key(thumb), f"{name} thumbnail")
    after = 0
    while True:
        page = catalog.job_artifacts(after_id=after)
        if not page:
            break
        for job_id, _version_id, artifacts in page:
            jobs += 1
            for label, sha in sorted(artifacts.items()):
                if isinstance(sha, str) and _SHA_RE.fullmatch(sha):
                    _add(refs, BundleStore.blob_key(sha), f"job {job_id} {label}")
        after = page[-1][0]
    return refs, versions, jobs


def all_versions(catalog: Any, page: int = 500) -> Iterator[Any]:
    """Every version of the catalog, a page at a time (until an empty page: a catalog that
    caps its pages below ``page`` must not end the walk early)."""
    offset = 0
    while True:
        batch = catalog.list_versions(limit=page, offset=offset)
        if not batch:
            return
        yield from batch
        offset += len(batch)


def _add(refs: dict[str, list[str]], key: str, ref: str) -> None:
    refs.setdefault(key, []).append(ref)


def check_store(catalog: Any, store: BundleStore, *, threads: int = 8) -> StoreCheckReport:
    """Read every object the catalog names and check it against its address."""
    t0 = time.perf_counter()
    refs, versions, jobs = referenced_keys(catalog)
    report = StoreCheckReport(store.url, objects=len(refs), versions=versions, jobs=jobs)

    def verify(key: str) -> tuple[str, int, StoreFinding | None]:
        named = tuple(refs[key])
        try:
            return key, store.verify_key(key), None
        except NotFound:
            return key, 0, StoreFinding(MISSING, key, "missing from the store", named)
        except StoreError:
            return key, 0, StoreFinding(MISMATCH, key, "holds other bytes than its address "
                                        "says", named)
        except NbappsError as exc:  # not a store key (NBA201)
            return key, 0, StoreFinding(UNREADABLE, key, exc.message, named)
        except Exception as exc:  # noqa: BLE001 - permissions, network: one finding each
            log.debug("reading %s failed", key, exc_info=True)
            return key, 0, StoreFinding(UNREADABLE, key, f"could not be read: {exc}", named)

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="nbapps-store-check") as pool:
        for _key, size, finding in pool.map(verify, sorted(refs)):
            if finding is None:
                report.ok += 1
                report.bytes_read += size
            else:
                report.findings.append(finding)
    report.seconds = time.perf_counter() - t0
    return report
