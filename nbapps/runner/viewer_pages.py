"""Which viewer holds which of a runner's kernels, for the per-viewer bound (issue 12.3).

Every page admitted to a runner takes a kernel for its viewer. The proxy tells us the page's
kernel once it sees it in the page (``bind``), when its WebSocket opens and closes, and when
the page's unload beacon shuts its kernel down. A page counts for its viewer until then, or,
if it never connects, until the runner culls its kernel (``unconnected_cull_timeout``): a
script that only GETs pages holds at most the per-viewer number of kernels, for at most that
long each.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

_ids = itertools.count(1)


@dataclass
class _Page:
    viewer: str
    admitted: float
    kernel: str = ""
    connected: bool = False
    id: int = field(default_factory=lambda: next(_ids))


class ViewerPages:
    """The pages (and so kernels) each viewer holds on one runner."""

    def __init__(self, unconnected_timeout: float) -> None:
        self.unconnected_timeout = unconnected_timeout
        self._pages: list[_Page] = []

    def _prune(self, now: float) -> None:
        if self.unconnected_timeout > 0:
            self._pages = [p for p in self._pages if p.connected
                           or now - p.admitted <= self.unconnected_timeout]

    def admit(self, viewer: str, now: float | None = None) -> int:
        """A page of ``viewer`` was admitted; returns its handle (for :meth:`bind`)."""
        page = _Page(viewer, time.monotonic() if now is None else now)
        self._pages.append(page)
        return page.id

    def bind(self, handle: int, kernel: str) -> None:
        """The page ``handle`` runs on ``kernel`` (read from the page by the proxy)."""
        for page in self._pages:
            if page.id == handle:
                page.kernel = kernel

    def count(self, viewer: str, now: float | None = None) -> int:
        self._prune(time.monotonic() if now is None else now)
        return sum(1 for p in self._pages if p.viewer == viewer)

    def unconnected(self, now: float | None = None) -> int:
        """Pages served whose kernel socket has not opened yet (and not culled): a page
        rendered seconds before a version switch connects to this runner afterwards."""
        self._prune(time.monotonic() if now is None else now)
        return sum(1 for p in self._pages if not p.connected)

    def connect(self, viewer: str, kernel: str = "") -> int:
        """A kernel WebSocket of ``viewer`` opened: it belongs to the page of that kernel, else
        their oldest page not connected yet, else to a page of its own (a reconnect). Returns a
        handle for :meth:`disconnect`."""
        mine = [p for p in self._pages if p.viewer == viewer and not p.connected]
        page = next((p for p in mine if kernel and p.kernel == kernel), None)
        if page is None:
            page = next((p for p in mine if not p.kernel), None)
        if page is None:
            page = _Page(viewer, time.monotonic(), kernel)
            self._pages.append(page)
        page.connected = True
        return page.id

    def disconnect(self, handle: int) -> None:
        self._pages = [p for p in self._pages if p.id != handle]

    def end_kernel(self, kernel: str) -> None:
        """The kernel was shut down (the page's unload beacon): its page no longer counts."""
        self._pages = [p for p in self._pages if p.kernel != kernel]


__all__ = ["ViewerPages"]
