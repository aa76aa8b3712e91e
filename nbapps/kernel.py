"""Kernel client and manager classes that cannot miss a wake-up.

The missed wake-up (DESIGN.md, "Known pitfalls"; jupyter/nbclient#312, voila#1428): a reply that
has already arrived on a kernel socket is sometimes noticed only when the poll waiting for it times
out. nbclient waits for each cell's reply with one ``get_msg(timeout=...)``, so a cell then takes
the whole cell timeout, and Voilà, which sets no timeout, hangs for ever.

The fix here is a channel whose ``get_msg`` waits in short slices (``poll_slice``, 0.1 s) until
its deadline. Each slice starts a new poll, and pyzmq checks the socket's real state
(``ZMQ_EVENTS``) whenever a poll starts, so a message that arrived without waking the event loop is
picked up by the next slice. A missed wake-up therefore costs at most one slice, never the whole
timeout. Waiting costs about ten extra poll calls per second, which is negligible.

The classes are plain subclasses (no monkeypatching), importable by dotted name for traitlets
configuration:

- publisher (papermill/nbclient): ``kernel_manager_class=NbappsKernelManager`` and
  ``shutdown_kernel="immediate"`` (the shutdown stall), see :mod:`nbapps.execute`;
- Voilà runners: ``c.ServerKernelManager.client_class = "nbapps.kernel.NbappsKernelClient"``, or
  ``c.AsyncMappingKernelManager.kernel_manager_class =
  "nbapps.kernel.NbappsServerKernelManager"`` (that class is created on first use so that the
  publisher does not import jupyter_server).

:func:`track_kernels` lets a caller find the kernel managers created inside a block of code (in
the same thread or asyncio task), so a total timeout can kill the kernel from another thread.
"""
from __future__ import annotations

import contextvars
import logging
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from queue import Empty
from typing import Any

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from traitlets import DottedObjectName, Type, Unicode, default
from traitlets.utils.importstring import import_item

from .processes import kill_process_tree

log = logging.getLogger("nbapps.kernel")

#: Longest single poll of a kernel socket, in seconds (the worst cost of a missed wake-up).
POLL_SLICE = 0.1
# a message older than this when a slice ends has been sitting in the socket unnoticed
_LATE = 0.03


class SlicedPollChannel(AsyncZMQSocketChannel):
    """An async kernel channel whose ``get_msg`` polls in slices of at most ``poll_slice``."""

    poll_slice: float = POLL_SLICE
    #: Diagnostic, all channels of the process: messages that were found only when a full slice
    #: timed out although they had been waiting for a while, i.e. wake-ups that a single long
    #: poll would have missed. Logged at debug level as they happen.
    late_wakeups: int = 0

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:  # type: ignore[override]
        """Return the next message, waiting at most ``timeout`` seconds (``None``: no limit).

        Raises :class:`queue.Empty` when the deadline passes, like the base class.
        """
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            assert self.socket is not None
            wait = self.poll_slice
            if deadline is not None:
                wait = min(wait, max(deadline - time.monotonic(), 0.0))
            started = time.monotonic()
            if await self.socket.poll(int(wait * 1000)):
                msg = await self._recv()
                if wait > 0 and time.monotonic() - started >= wait:
                    self._check_late(msg, wait)
                return msg
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty

    def _check_late(self, msg: dict[str, Any], wait: float) -> None:
        sent = msg.get("header", {}).get("date")
        if not isinstance(sent, datetime):
            return
        age = (datetime.now(timezone.utc) - sent).total_seconds()
        if age > min(wait / 2, _LATE):
            SlicedPollChannel.late_wakeups += 1
            log.debug("kernel message %s noticed only when a %.2fs poll slice ended (%.2fs old)",
                      msg.get("msg_type"), wait, age)


class NbappsKernelClient(AsyncKernelClient):
    """An :class:`AsyncKernelClient` whose request/reply and iopub channels poll in slices,
    and whose :meth:`wait_for_ready` returns as soon as the kernel is ready."""

    shell_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    iopub_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    stdin_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]
    control_channel_class = Type(SlicedPollChannel)  # type: ignore[assignment]

    #: seconds to wait for IOPub to carry our kernel_info's idle status before asking again
    iopub_check: float = 0.5

    async def wait_for_ready(self, timeout: float | None = None) -> None:  # type: ignore[override]
        """Wait until the kernel answers ``kernel_info`` and IOPub is connected and flushed.

        jupyter_client's version, after the reply, waits for IOPub to stay silent for 0.2 s
        (at least twice), so every page that starts a kernel waited 0.4 s or more for nothing
        (nbclient calls this before the first cell). Here the ``idle`` status of our own
        ``kernel_info_request`` on IOPub proves the subscription works and that everything
        published before it has been read; if it does not come (IOPub joined too late to see
        it), the request is sent again, as jupyter_client does.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left(cap: float) -> float:
            if deadline is None:
                return cap
            return max(min(cap, deadline - time.monotonic()), 0.0)

        while True:
            msg_id = self.kernel_info()
            reply = await self._reply_for(msg_id, left(1.0))
            if reply is not None and await self._idle_for(msg_id, left(self.iopub_check)):
                self._handle_kernel_info_reply(reply)
                return
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")

    async def _reply_for(self, msg_id: str, wait: float) -> dict[str, Any] | None:
        end = time.monotonic() + wait
        while True:
            try:
                msg = await self.shell_channel.get_msg(timeout=max(end - time.monotonic(), 0))
            except Empty:
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg if msg.get("msg_type") == "kernel_info_reply" else None

    async def _idle_for(self, msg_id: str, wait: float) -> bool:
        end = time.monotonic() + wait
        while True:
            try:
                msg = await self.iopub_channel.get_msg(timeout=max(end - time.monotonic(), 0))
            except Empty:
                return False
            if (msg.get("msg_type") == "status"
                    and msg.get("parent_header", {}).get("msg_id") == msg_id
                    and msg.get("content", {}).get("execution_state") == "idle"):
                return True


class NbappsKernelManager(AsyncKernelManager):
    """An :class:`AsyncKernelManager` whose clients are :class:`NbappsKernelClient`.

    ``client_class`` stays configurable; it must name an ``AsyncKernelClient`` subclass.
    Managers created inside :func:`track_kernels` are recorded there.
    """

    client_class = DottedObjectName("nbapps.kernel.NbappsKernelClient", config=True)

    @default("client_factory")
    def _client_factory_default(self) -> type:
        # AsyncKernelManager pins the factory to AsyncKernelClient; derive it from client_class.
        return import_item(self.client_class)

    kernel_log = Unicode(
        "", config=True,
        help="File that receives the kernel process's stdout and stderr (empty: inherit ours). "
        "Keeps the kernel's own warnings out of a command's output; read it when a kernel dies.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tracker = _TRACKER.get()
        while tracker is not None:
            tracker.managers.append(self)
            tracker = tracker.parent

    async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
        if not self.kernel_log or "stdout" in kw or "stderr" in kw:
            await super().start_kernel(**kw)
            return
        with open(self.kernel_log, "ab") as out:  # the child keeps its own copy of the fd
            await super().start_kernel(stdout=out, stderr=subprocess.STDOUT, **kw)


class KernelTracker:
    """The kernel managers created while a :func:`track_kernels` block was active."""

    def __init__(self) -> None:
        self.managers: list[AsyncKernelManager] = []
        self.parent: KernelTracker | None = None  # an enclosing tracker also sees our managers

    def pids(self) -> list[int]:
        """Process ids of the tracked kernels that were launched (alive or not)."""
        out = []
        for km in self.managers:
            pid = getattr(getattr(km, "provisioner", None), "pid", None)
            if isinstance(pid, int):
                out.append(pid)
        return out

    def kill_all(self) -> int:
        """Kill every tracked kernel and its child processes (SIGKILL); returns how many died.

        Safe to call from any thread: it only sends signals, it does not touch the managers'
        event loop.
        """
        return sum(kill_process_tree(pid) for pid in self.pids())


_TRACKER: contextvars.ContextVar[KernelTracker | None] = contextvars.ContextVar(
    "nbapps_kernel_tracker", default=None
)


@contextmanager
def track_kernels(tracker: KernelTracker | None = None) -> Iterator[KernelTracker]:
    """Record the :class:`NbappsKernelManager` instances created in this context.

    Blocks nest: a manager is recorded by every enclosing tracker.
    """
    tracker = tracker or KernelTracker()
    tracker.parent = _TRACKER.get()
    token = _TRACKER.set(tracker)
    try:
        yield tracker
    finally:
        _TRACKER.reset(token)


def _server_kernel_manager() -> type:
    from jupyter_server.services.kernels.kernelmanager import ServerKernelManager

    class NbappsServerKernelManager(ServerKernelManager):  # type: ignore[misc]
        """jupyter_server's kernel manager (as Voilà needs) with :class:`NbappsKernelClient`."""

        client_class = DottedObjectName("nbapps.kernel.NbappsKernelClient", config=True)

        @default("client_factory")
        def _client_factory_default(self) -> type:
            return import_item(self.client_class)

    NbappsServerKernelManager.__module__ = __name__
    NbappsServerKernelManager.__qualname__ = "NbappsServerKernelManager"
    return NbappsServerKernelManager


def __getattr__(name: str) -> Any:
    # PEP 562: build the jupyter_server-based class only when someone asks for it by name.
    if name == "NbappsServerKernelManager":
        cls = _server_kernel_manager()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
