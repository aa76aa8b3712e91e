"""``nbapps store gc``: find (and remove) what the bundle store holds that no catalog row names.

What stays in a store for ever otherwise: blobs a run pool deferred deleting and forgot when the
gallery stopped (:meth:`nbapps.runs.pool.RunPool.forget_blobs` keeps them in memory only),
sources stored by an upload whose submission then failed, and ``.tmp-*`` leftovers of writes a
crash interrupted. Four kinds are weighed (:data:`KINDS`):

- ``blob``: not named by any job's artifacts (checks and runs) nor any version's thumbnail
  (:meth:`nbapps.catalog.runs.RunsMixin.referenced_blobs`, the rule run retention uses);
- ``source`` and ``legacy``: not named by any version (:func:`referenced_sources`);
- ``temporary``: a ``.tmp-*`` file of a write.

Files of any other name are counted and left alone. Safe next to live galleries:

- only objects older than ``min_age`` are candidates (a worker or an upload may have stored an
  object it has not recorded yet: that takes seconds, the default age is an hour);
- deleting is refused (:class:`GcRefused`, NBA398) while the catalog shows a job running, unless
  ``force``, and stops between batches when one starts;
- the references are read again right before each batch is deleted; an object already gone is
  not an error, one that cannot be deleted is reported (NBA399) and the rest go on.

One window stays: a store write of bytes already stored keeps the old object (its old time) and
records it a moment later; an upload or a PDF print (not jobs) doing that between the re-read
and the deletion of that very object would lose it. ``nbapps store check`` finds such a loss.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import Conflict
from .store import BundleStore, StoredObject

log = logging.getLogger("nbapps.store")

_SHA_RE = re.compile(r"[0-9a-f]{64}")
KINDS = ("blob", "source", "legacy", "temporary")
TEMPORARY_PREFIX = ".tmp-"
REFUSED, NOT_DELETED = "NBA398", "NBA399"
#: default ``min_age`` (seconds)
DEFAULT_MIN_AGE = 3600.0
#: objects deleted between two looks at the references and the running jobs
BATCH = 500
#: names shown per kind in the summary
SHOWN = 5


class GcRefused(Conflict):
    """Deleting refused while jobs run (NBA398)."""

    code = REFUSED
    exit_code = 1


@dataclass
class KindTotals:
    count: int = 0
    bytes: int = 0
    #: the first :data:`SHOWN` keys, in key order
    first: list[str] = field(default_factory=list)

    def add(self, obj: StoredObject) -> None:
        self.count += 1
        self.bytes += obj.size
        if len(self.first) < SHOWN:
            self.first.append(obj.key)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "first": list(self.first)}


@dataclass(frozen=True)
class NotDeleted:
    key: str
    message: str
    code: str = NOT_DELETED

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "key": self.key, "message": self.message}


@dataclass
class GcReport:
    store: str
    min_age: float
    delete: bool
    #: files listed, and those younger than ``min_age`` (not weighed)
    listed: int = 0
    young: int = 0
    #: files that are neither store objects nor temporaries (never deleted)
    other: int = 0
    #: jobs running when deleting started (non-zero only with ``force``)
    jobs_running: int = 0
    unreferenced: dict[str, KindTotals] = field(
        default_factory=lambda: {k: KindTotals() for k in KINDS})
    deleted: dict[str, KindTotals] = field(
        default_factory=lambda: {k: KindTotals() for k in KINDS})
    #: candidates found named when the references were read again (kept)
    referenced_again: int = 0
    #: candidates already gone when deleted (another gc, run retention)
    already_gone: int = 0
    failed: list[NotDeleted] = field(default_factory=list)
    #: why deleting stopped before the end (a job started), else None
    stopped: str | None = None
    seconds: float = 0.0

    @property
    def found(self) -> int:
        return sum(t.count for t in self.unreferenced.values())

    @property
    def found_bytes(self) -> int:
        return sum(t.bytes for t in self.unreferenced.values())

    @property
    def removed(self) -> int:
        return sum(t.count for t in self.deleted.values())

    @property
    def removed_bytes(self) -> int:
        return sum(t.bytes for t in self.deleted.values())

    @property
    def complete(self) -> bool:
        """Nothing refused, stopped or failed."""
        return self.stopped is None and not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "min_age": self.min_age, "delete": self.delete,
                "listed": self.listed, "young": self.young, "other": self.other,
                "jobs_running": self.jobs_running,
                "unreferenced": {k: t.to_dict() for k, t in self.unreferenced.items()},
                "unreferenced_count": self.found, "unreferenced_bytes": self.found_bytes,
                "deleted": {k: t.to_dict() for k, t in self.deleted.items()},
                "deleted_count": self.removed, "deleted_bytes": self.removed_bytes,
                "referenced_again": self.referenced_again, "already_gone": self.already_gone,
                "failed": [f.to_dict() for f in self.failed], "stopped": self.stopped,
                "complete": self.complete, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class _Candidate:
    obj: StoredObject
    kind: str
    #: the blob's address (blobs only)
    sha256: str | None = None


def referenced_sources(catalog: Any) -> set[str]:
    """Store keys of sources and legacy archives some version may read: the source object its
    manifest records, the key it was stored under, and the source object and legacy archive
    of its own hash (where :meth:`nbapps.store.BundleStore.read_source` looks without a key)."""
    from .jobs.source import source_ref
    from .store_check import all_versions

    keys: set[str] = set()
    for version in all_versions(catalog):
        _sha, key = source_ref(version)
        own = getattr(version, "store_key", None)
        keys.update(k for k in (key, own) if isinstance(k, str) and k)
        if isinstance(version.sha256, str) and _SHA_RE.fullmatch(version.sha256):
            keys.add(BundleStore.source_key(version.sha256))
            keys.add(BundleStore.key_for(version.sha256))
    return keys


def _candidates(store: BundleStore, report: GcReport, now: datetime) -> list[_Candidate]:
    """Files older than the report's ``min_age``, each with its kind (others are counted)."""
    oldest = now - timedelta(seconds=report.min_age)
    found: list[_Candidate] = []
    for obj in store.iter_objects():
        report.listed += 1
        if obj.modified is None or obj.modified > oldest:
            report.young += 1  # no time told counts as young: never deleted
            continue
        kind = BundleStore.classify_key(obj.key)
        if kind is not None:
            found.append(_Candidate(obj, kind[0], kind[1] if kind[0] == "blob" else None))
        elif obj.key.rsplit("/", 1)[-1].startswith(TEMPORARY_PREFIX):
            found.append(_Candidate(obj, "temporary"))
        else:
            report.other += 1
    return found


def _unreferenced(catalog: Any, candidates: list[_Candidate]) -> list[_Candidate]:
    """The candidates no catalog row names now (read from the catalog at this call)."""
    blobs = {c.sha256 for c in candidates if c.kind == "blob"}
    named_blobs = catalog.referenced_blobs(blobs) if blobs else set()
    named_sources: set[str] = set()
    if any(c.kind in ("source", "legacy") for c in candidates):
        named_sources = referenced_sources(catalog)
    return [c for c in candidates
            if not (c.kind == "blob" and c.sha256 in named_blobs)
            and not (c.kind in ("source", "legacy") and c.obj.key in named_sources)]


def _batches(items: list[_Candidate], size: int) -> Iterator[list[_Candidate]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def collect_garbage(catalog: Any, store: BundleStore, *, min_age: float = DEFAULT_MIN_AGE,
                    delete: bool = False, force: bool = False, batch: int = BATCH,
                    now: datetime | None = None) -> GcReport:
    """List (and with ``delete`` remove) the objects older than ``min_age`` seconds that no
    catalog row names. ``delete`` raises GcRefused NBA398 while a job runs, unless ``force``."""
    t0 = time.perf_counter()
    report = GcReport(store.url, float(min_age), bool(delete))
    if delete:
        running = int(catalog.count_running_jobs())
        if running and not force:
            raise GcRefused(f"{running} job(s) are running: nothing deleted (a running job may "
                            "have stored an object it has not recorded yet)")
        report.jobs_running = running
    now = now or datetime.now(timezone.utc)
    found = _unreferenced(catalog, _candidates(store, report, now))
    for c in found:
        report.unreferenced[c.kind].add(c.obj)
    if delete:
        _delete(catalog, store, report, found, force=force, batch=max(1, int(batch)))
    report.seconds = time.perf_counter() - t0
    return report


def _delete(catalog: Any, store: BundleStore, report: GcReport, found: list[_Candidate], *,
            force: bool, batch: int) -> None:
    for index, chunk in enumerate(_batches(found, batch)):
        if index and not force:
            running = int(catalog.count_running_jobs())
            if running:
                report.stopped = (f"{running} job(s) started while deleting: stopped; run "
                                  "again later")
                return
        still = _unreferenced(catalog, chunk)
        report.referenced_again += len(chunk) - len(still)
        for c in still:
            _delete_one(store, report, c)


def _delete_one(store: BundleStore, report: GcReport, c: _Candidate) -> None:
    try:
        if not store.remove(c.obj.key):
            report.already_gone += 1
            return
    except Exception as exc:  # noqa: BLE001 - permissions, network: reported, the rest go on
        log.debug("deleting %s failed", c.obj.key, exc_info=True)
        report.failed.append(NotDeleted(c.obj.key, f"not deleted: {exc}"))
        return
    report.deleted[c.kind].add(c.obj)
    log.info("store gc: deleted %s (%d bytes)", c.obj.key, c.obj.size)


def summary_lines(report: GcReport) -> Iterable[str]:
    """The text output of ``nbapps store gc``."""
    age = _age_text(report.min_age)
    head = (f"{report.found} unreferenced object(s), {report.found_bytes} bytes, older than "
            f"{age} in {report.store}")
    if not report.delete:
        yield f"dry run: {head} (nothing deleted; --delete removes them)"
    else:
        yield (f"deleted {report.removed} object(s), {report.removed_bytes} bytes, of {head}"
               f" ({report.referenced_again} named again when re-read, kept; "
               f"{report.already_gone} already gone)")
    for kind in KINDS:
        totals = report.unreferenced[kind]
        yield f"  {kind:<9} {totals.count:>6} object(s) {totals.bytes:>12} bytes"
        yield from (f"      {key}" for key in totals.first)
        if totals.count > len(totals.first):
            yield f"      ... and {totals.count - len(totals.first)} more"
    yield (f"{report.listed} file(s) listed: {report.young} younger than {age} not weighed, "
           f"{report.other} of unknown name left alone ({report.seconds:.1f} s)")
    if report.jobs_running:
        yield f"warning: {report.jobs_running} job(s) were running (--force)"
    for f in report.failed:
        yield f"{f.code} {f.key}: {f.message}"
    if report.stopped:
        yield f"{REFUSED}: {report.stopped}"


def _age_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
