"""Voilà's own scripts, styles and fonts, kept in the gallery's memory after their first use.

An app page loads about 100 of them. A sandboxed page has an opaque origin, and Chromium does not
reuse its HTTP cache for such documents (measured: every load of a CSP-sandboxed page, top-level
or framed, fetched every script again, with ``max-age`` or ``Last-Modified`` alike), so without
this each app page would send all of them through the proxy to its runner again. They are the
same files for every app (Voilà's static folder, the labextensions, the nbapps template; never
the app's own ``voila/files/``) and hold no secret, so one copy serves every app and viewer;
the gallery still authorises each request as usual. Compressible ones are kept gzipped too.
"""
from __future__ import annotations

import gzip
import threading
from collections import OrderedDict
from dataclasses import dataclass

#: runner paths whose answers are the same for every app (``voila/files/`` is the app's own)
SHARED_PREFIXES = ("voila/static/", "voila/labextensions/", "voila/templates/",
                   "voila/api/themes/")
#: response headers kept with a cached asset
KEPT_HEADERS = ("Content-Type", "ETag", "Last-Modified", "Cache-Control")
_COMPRESSIBLE = ("javascript", "text/", "json", "svg", "xml", "font/ttf", "font/otf",
                 "application/vnd.ms-fontobject")


@dataclass(frozen=True)
class CachedAsset:
    headers: tuple[tuple[str, str], ...]
    body: bytes
    #: the body gzipped (None when it does not compress: images, woff2)
    gzipped: bytes | None = None

    @property
    def size(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


class AssetCache:
    """A bounded LRU of shared assets (thread-safe; the proxy runs on one IOLoop anyway)."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024, max_item: int = 8 * 1024 * 1024
                 ) -> None:
        self.max_bytes = max_bytes
        self.max_item = max_item
        self._items: OrderedDict[str, CachedAsset] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(rel: str, query: str) -> str | None:
        """The cache key of a runner path, or None if its answer is not shared by all apps."""
        if not rel.startswith(SHARED_PREFIXES) or ".." in rel.split("/"):
            return None
        return f"{rel}?{query}" if query else rel

    def get(self, key: str) -> CachedAsset | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item

    def has(self, key: str) -> bool:
        """Whether ``key`` is in memory (not counted as a hit or a miss)."""
        with self._lock:
            return key in self._items

    def put(self, key: str, headers: list[tuple[str, str]], body: bytes) -> None:
        if len(body) > self.max_item or self.max_bytes <= 0:
            return
        kept = tuple((k, v) for k, v in headers if k in KEPT_HEADERS)
        content_type = dict(kept).get("Content-Type", "")
        gz = None
        if len(body) > 1024 and any(t in content_type for t in _COMPRESSIBLE):
            gz = gzip.compress(body, compresslevel=6, mtime=0)
            if len(gz) >= len(body):
                gz = None
        item = CachedAsset(kept, body, gz)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old.size
            self._items[key] = item
            self._bytes += item.size
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= dropped.size
