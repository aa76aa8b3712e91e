"""Fewer, larger writes of a page Voilà renders for a new kernel (issue 12's rush).

Voilà's page handler flushes every piece its Jinja template yields. A page rendered for a kernel
that is not from the pool comes out as a few hundred small pieces, so each page costs as many
chunked writes (system calls) in the runner and as many reads and writes in the gallery's proxy
and the browser. In a rush of new viewers on two cores, the runner's writes alone were 14 % of
its Voilà process's CPU (py-spy).

:func:`install` makes the handler write every piece and flush only when the page generator
has produced nothing for :data:`QUIET` seconds (it waits for a cell's execution or a kernel), or
when :data:`MAX_HELD` bytes or :data:`MAX_DELAY` seconds are held. A quiet turn of the event loop
is not enough: for a kernel that is not from the pool, Voilà passes each piece through a queue read
with ``asyncio.wait_for``, a task of its own, so the loop turns between any two pieces.
Progressive rendering is unchanged: what is rendered is sent at most ``QUIET`` after the page
starts waiting.

Runs in the runner's Voilà process (from its generated ``voila.py``).
"""
from __future__ import annotations

import asyncio
from typing import Any

#: seconds without a new piece after which the pieces held are sent
QUIET = 0.002
#: bytes or seconds after which pieces are sent even if more keep coming
MAX_HELD = 64 * 1024
MAX_DELAY = 0.02


async def write_coalesced(self: Any, path: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    held = 0  # bytes written since the last flush
    first = last = 0.0  # when the first and the last of them were written
    timer: asyncio.TimerHandle | None = None

    def flush() -> None:
        nonlocal held, timer
        timer = None
        if self._finished:
            return
        now = loop.time()
        if now - last < QUIET and now - first < MAX_DELAY:
            timer = loop.call_later(QUIET, flush)
            return
        held = 0
        self.flush()

    async for html in self.get_generator(path=path):
        self.write(html)
        last = loop.time()
        if held == 0:
            first = last
        held += len(html)
        if held >= MAX_HELD:
            if timer is not None:
                timer.cancel()
                timer = None
            held = 0
            self.flush()
        elif timer is None:
            timer = loop.call_later(QUIET, flush)
    if timer is not None:
        timer.cancel()


def install() -> None:
    """Replace the body of Voilà's page handler ``get`` (keeping its authentication)."""
    import tornado.web
    from voila.tornado.handler import TornadoVoilaHandler

    if getattr(TornadoVoilaHandler.get, "nbapps_coalesced", False):
        return
    get = tornado.web.authenticated(write_coalesced)
    get.nbapps_coalesced = True  # type: ignore[attr-defined]
    TornadoVoilaHandler.get = get  # type: ignore[method-assign]


__all__ = ["install", "write_coalesced"]
