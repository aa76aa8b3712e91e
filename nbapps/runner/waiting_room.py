"""The queue in front of an app that is at its kernel or memory limit (issue 12.2).

A viewer who cannot get a kernel now gets a place instead of a wall. The place is keyed by the
viewer's app ticket (one per page load in the gallery's frame), so reloading the waiting page
keeps it; the waiting page reloads itself every ``poll`` seconds, and a place whose page has not
asked for ``patience`` seconds is given up (the viewer left). Places advance in arrival order:
the first ``free`` places are admitted, and a newcomer never overtakes anyone already waiting.
"""
from __future__ import annotations

import time
from collections import OrderedDict


class WaitingRoom:
    """Viewers waiting for one app, oldest first."""

    def __init__(self, patience: float) -> None:
        self.patience = patience
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> last time it asked

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def prune(self, now: float | None = None) -> None:
        """Give up the places of viewers who stopped asking (closed the page)."""
        now = time.monotonic() if now is None else now
        for key in [k for k, seen in self._seen.items() if now - seen > self.patience]:
            del self._seen[key]

    def place(self, key: str, now: float | None = None) -> int:
        """The 1-based place of ``key`` (joining at the end if new); marks it as still there."""
        now = time.monotonic() if now is None else now
        if key not in self._seen:
            self._seen[key] = now
            return len(self._seen)
        self._seen[key] = now
        for i, k in enumerate(self._seen, 1):
            if k == key:
                return i
        raise AssertionError("unreachable")

    def leave(self, key: str) -> None:
        self._seen.pop(key, None)


__all__ = ["WaitingRoom"]
