"""Admission leases: how the proxy uses a runner without changing the runner's counters.

A runner owns its state (requests in flight, connected pages, the queue of page renders). The
proxy asks for a :class:`Lease` and gives it back; the runner counts. Every lease is released
exactly once, whatever happens to the request (``release`` is idempotent, and leases are
context managers)::

    with runner.hold("request"):           # an asset, a kernel call, a page being streamed
        ...
    lease = runner.hold("socket")          # a page's kernel WebSocket, until it closes
    ...
    lease.release()

    try:
        async with await runner.render_slot():   # a page render: waits in the runner's queue
            ...                                  # (at most ``renders()`` render at once)
    except RunnerBusy:                     # ``max_queued_renders`` are waiting already
        ...

The busy counts the supervisor reads (:meth:`Runner.busy`, idle stop, drain), the render
queue and the viewers' pages (:class:`~.viewer_pages.ViewerPages`) are the runner's; the proxy
never writes them, it only holds and releases leases.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

from .viewer_pages import ViewerPages

Kind = Literal["request", "socket", "render"]


class RunnerBusy(RuntimeError):
    """The runner's render queue is full: the viewer gets the busy page."""


class Lease:
    """A claim on a runner, given back with :meth:`release` (once; later calls do nothing)."""

    def __init__(self, kind: Kind, release: Callable[[], None]) -> None:
        self.kind = kind
        self.acquired = time.monotonic()
        self._release: Callable[[], None] | None = release

    @property
    def released(self) -> bool:
        return self._release is None

    def release(self) -> None:
        fn, self._release = self._release, None
        if fn is not None:
            fn()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class Admissions:
    """The counts behind a runner's leases (``owner`` holds ``active_requests``,
    ``open_websockets`` and ``queued_renders``, read by the supervisor and the proxy)."""

    def __init__(self, owner: Any, slots: asyncio.Semaphore, max_queued: int,
                 pages: ViewerPages) -> None:
        self.owner = owner
        self.slots = slots
        self.max_queued = max_queued
        self.pages = pages

    def hold(self, kind: Literal["request", "socket"], viewer: str | None = None,
             kernel: str = "") -> Lease:
        """``viewer``, ``kernel``: whose page a socket belongs to (:class:`ViewerPages`)."""
        attr = "active_requests" if kind == "request" else "open_websockets"
        setattr(self.owner, attr, getattr(self.owner, attr) + 1)
        self.owner.last_used = time.monotonic()
        page = self.pages.connect(viewer, kernel) if kind == "socket" and viewer else None

        def release() -> None:
            setattr(self.owner, attr, getattr(self.owner, attr) - 1)
            self.owner.last_used = time.monotonic()
            if page is not None:
                self.pages.disconnect(page)

        return Lease(kind, release)

    async def render_slot(self) -> Lease:
        """Wait for a render slot in arrival order; :class:`RunnerBusy` if the queue is full."""
        owner = self.owner
        if owner.queued_renders >= self.max_queued:
            raise RunnerBusy("too many viewers are waiting for this app")
        owner.queued_renders += 1
        try:
            await self.slots.acquire()
        finally:
            owner.queued_renders -= 1
        return Lease("render", self.slots.release)
