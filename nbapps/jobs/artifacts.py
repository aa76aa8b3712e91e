"""The artifacts of a check run: names, files, size limits, and how readers load them.

A check writes its artifacts into its output folder (:data:`FILES`); the worker stores each as a
content-addressed blob of the bundle store and records ``{name: sha256}`` on the job
(``jobs.artifacts``). Readers (review pages, the app page, the API) load them back by that
address; blobs are immutable, so parsed artifacts are cached by address.

A version's thumbnail column holds a reference to its thumbnail blob, ``blob:<sha256>.png``
(:func:`thumbnail_ref`), so gallery cards need no join with the jobs table.
"""
from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

import nbformat

from ..store import BundleStore

REPORT = "report"
EXECUTED = "executed"
THUMBNAIL = "thumbnail"
CONTRACT = "contract"
#: artifact name -> file name in the check's output folder
FILES = {REPORT: "report.json", EXECUTED: "executed.ipynb", THUMBNAIL: "thumbnail.png",
         CONTRACT: "contract.json"}
#: largest file kept per artifact (a bigger one is left out and noted in the job's result)
MAX_BYTES = {REPORT: 16 * 1024 * 1024, EXECUTED: 100 * 1024 * 1024,
             THUMBNAIL: 4 * 1024 * 1024, CONTRACT: 1024 * 1024}
_REF = re.compile(r"blob:([0-9a-f]{64})\.png")


def thumbnail_ref(sha256: str) -> str:
    """The value a version's ``thumbnail`` column holds for a thumbnail blob."""
    return f"blob:{sha256}.png"


def parse_thumbnail_ref(ref: Any) -> str | None:
    """The blob address in a :func:`thumbnail_ref`, or None for anything else (legacy paths
    inside a client archive are never served)."""
    m = _REF.fullmatch(ref) if isinstance(ref, str) else None
    return m.group(1) if m else None


def collect(out_dir: Path, store: BundleStore) -> tuple[dict[str, str], list[str]]:
    """Store the artifacts found in ``out_dir`` as blobs; returns ({name: sha256}, notes about
    artifacts left out). Links and special files are ignored (the check wrote them, not us)."""
    stored: dict[str, str] = {}
    notes: list[str] = []
    for name, filename in FILES.items():
        path = out_dir / filename
        if path.is_symlink() or not path.is_file():
            continue
        size = path.stat().st_size
        if size > MAX_BYTES[name]:
            notes.append(f"the {name} artifact ({size} bytes) is larger than the gallery keeps "
                         f"({MAX_BYTES[name]} bytes)")
            continue
        stored[name] = store.put_blob(path.read_bytes())
    return stored, notes


class _ParsedCache:
    """Parsed artifacts by (kind, address): addresses never change meaning."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: tuple[str, str], value: Any) -> None:
        with self._lock:
            self._data[key] = value
            while len(self._data) > self.size:
                self._data.popitem(last=False)


_parsed = _ParsedCache()


def load_json(store: BundleStore, sha256: str) -> Any:
    """A JSON artifact (report, contract); a fresh copy the caller may change."""
    hit = _parsed.get(("json", sha256))
    if hit is None:
        hit = json.loads(store.get_blob(sha256).decode("utf-8"))
        _parsed.put(("json", sha256), hit)
    return json.loads(json.dumps(hit))


def load_notebook(store: BundleStore, sha256: str) -> nbformat.NotebookNode:
    """A notebook artifact (the executed notebook)."""
    return nbformat.reads(store.get_blob(sha256).decode("utf-8"), as_version=4)


__all__ = ["CONTRACT", "EXECUTED", "FILES", "MAX_BYTES", "REPORT", "THUMBNAIL", "collect",
           "load_json", "load_notebook", "parse_thumbnail_ref", "thumbnail_ref"]
