"""Code that runs inside a runner's Voilà process (named in the generated ``voila.py`` config).

- :class:`RunnerKernelManager` is the base class Voilà wraps into its pooling
  ``VoilaKernelManager`` (``VoilaConfiguration.multi_kernel_manager_class``). It makes every kernel
  use :mod:`nbapps.kernel`'s manager, whose client polls in short slices (the missed wake-up fix),
  and it writes a small status file (kernels, which are pooled, the client class in use) that the
  supervisor reads instead of asking Voilà over HTTP (Voilà has no kernel listing route).
  It also shuts down, after ``unconnected_cull_timeout`` seconds, the kernels of pages that never
  connected (a page GET takes a kernel; a client that never opens the page's WebSocket, a
  script or a crawler, would otherwise hold it until the idle cull, 10 minutes later).
- :func:`log_request` is the runner's access log (tornado ``log_function``): one line per request
  with the gallery's ``X-Request-Id``, so a runner's log joins the gallery's.
- :func:`make_timeout_func` gives Voilà's executor a per-cell timeout so a page never hangs,
  except for the injected wait-for-request cell, which waits in a pooled kernel for as long as
  no viewer comes.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado.ioloop import PeriodicCallback
from traitlets import Float, Integer, Unicode, default

from .hub_launch import FORGET_CONFIG_ENV
from .notebook_variants import is_wait_cell
from .status_report import URL_ENV, StatusReporter

FIX_MANAGER = "nbapps.kernel.NbappsServerKernelManager"


def make_timeout_func(seconds: float | None) -> Callable[[Any], float | None]:
    """nbclient ``timeout_func``: ``seconds`` per cell, no limit for the wait-for-request cell."""

    def timeout_for(cell: Any) -> float | None:
        if is_wait_cell(cell):
            return None
        return seconds

    return timeout_for


def log_request(handler: Any) -> None:
    """One line per request on Voilà's logger (so in the runner's log file): method, path (no
    query: it may carry the token), status, time and the gallery's request id. Successful
    static assets are left out (a page loads dozens)."""
    request = handler.request
    status = handler.get_status()
    path = request.path
    if status < 400 and ("/static/" in path or "/labextensions/" in path):
        return
    rid = (request.headers.get("X-Request-Id") or "-")[:128]
    level = logging.INFO if status < 500 else logging.ERROR
    logging.getLogger("Voila").log(level, "%s %s %d %.1fms request_id=%s", request.method,
                                   path, status, 1000.0 * request.request_time(), rid)


def _waiting_kernel_ids() -> set[str]:
    """Kernels of the custom variant connected to Voilà and waiting for their request."""
    try:
        from voila.request_info_handler import RequestInfoSocketHandler
    except ImportError:  # pragma: no cover (Voilà always has it)
        return set()
    return set(RequestInfoSocketHandler._waiters)


def _class_name(cls: Any) -> str:
    return f"{getattr(cls, '__module__', '?')}.{getattr(cls, '__qualname__', repr(cls))}"


def _started(pool_task: asyncio.Future[Any]) -> dict[str, Any] | None:
    """What a done pool task holds (its kernel id and render task), None if it failed."""
    if pool_task.cancelled() or pool_task.exception() is not None:
        return None
    content = pool_task.result()
    return content if isinstance(content, dict) else None


def _pre_running(pool_task: asyncio.Future[Any], waiting: set[str]) -> bool:
    """Whether a (done) pool task's kernel still pre-runs its notebook (and is not the custom
    variant's kernel waiting for its request)."""
    content = _started(pool_task)
    render = content.get("task") if content else None
    return render is not None and not render.done() and content.get("kernel_id") not in waiting


class RunnerKernelManager(AsyncMappingKernelManager):
    """The mapping kernel manager of a runner: fixed kernel class and a status file."""

    status_path = Unicode("", config=True, help="Where to write the runner's status JSON.")
    status_token = Unicode(
        "", config=True,
        help="With $NBAPPS_STATUS_URL (set by the Hub launcher of a remote runner): the "
             "credential its status reports to the gallery carry (:mod:`.status_report`).")
    status_interval = Float(0.5, config=True, help="Seconds between status checks.")
    refill_yield = Float(
        3.0, config=True,
        help="A pool refill waits up to this long while a page's kernel is busy (rendering).",
    )
    max_concurrent_preheats = Integer(
        2, config=True,
        help="Pool kernels started or pre-running their notebook at the same time (at most).",
    )
    unconnected_cull_timeout = Integer(
        45, config=True,
        help="Seconds after which a page's kernel that no WebSocket ever connected to (and that "
             "did nothing meanwhile) is shut down; 0: never.",
    )

    @default("kernel_manager_class")
    def _default_kernel_manager_class(self) -> str:
        return FIX_MANAGER

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._starting_preheats = 0
        #: each pool's first kernel task, let through at once (see _wait_for_preheat_slot)
        self._firsts: dict[str, asyncio.Task[Any]] = {}
        self._last_status = ""
        self._status_cb: PeriodicCallback | None = None
        self._cull_cb: PeriodicCallback | None = None
        self._connected: set[str] = set()
        self._unpooled_since: dict[str, float] = {}
        self.unconnected_culled = 0
        url = os.environ.pop(URL_ENV, "")
        self._reporter = StatusReporter(url, self.status_token) if url else None
        # a remote runner's configuration (its token and this one) is read: app code in this
        # runner's folder must not find it (a local runner's is removed by the gallery)
        forget = os.environ.pop(FORGET_CONFIG_ENV, "")
        if forget:
            with contextlib.suppress(OSError):
                os.unlink(forget)

    def _ensure_status_loop(self) -> None:
        if self._status_cb is None and (self.status_path or self._reporter is not None):
            self._status_cb = PeriodicCallback(self.write_status, self.status_interval * 1000)
            self._status_cb.start()
        if self._cull_cb is None and self.unconnected_cull_timeout > 0:
            every = max(1.0, min(5.0, self.unconnected_cull_timeout / 4))
            self._cull_cb = PeriodicCallback(self._cull_unconnected, every * 1000)
            self._cull_cb.start()

    def notify_connect(self, kernel_id: str) -> None:
        self._connected.add(kernel_id)
        super().notify_connect(kernel_id)

    async def _cull_unconnected(self) -> None:
        """Shut down page kernels that no page ever connected to (see the module docstring)."""
        limit = self.unconnected_cull_timeout
        now = time.monotonic()
        pooled = self._pooled_ids() | self._pending_pool_ids()
        for kid in list(self._unpooled_since):
            if kid not in self._kernels:
                self._unpooled_since.pop(kid, None)
                self._connected.discard(kid)
        for kid, km in list(self._kernels.items()):
            if kid in pooled or kid in self._connected:
                self._unpooled_since.pop(kid, None)
                continue
            since = self._unpooled_since.setdefault(kid, now)
            if now - since < limit or getattr(km, "execution_state", "") == "busy":
                continue
            last = getattr(km, "last_activity", None)
            if isinstance(last, datetime):
                quiet = (datetime.now(timezone.utc) - last).total_seconds()
                if quiet < limit:
                    continue
            self.log.info("kernel %s: its page never connected in %ss; shutting it down", kid,
                          limit)
            self.unconnected_culled += 1
            self._unpooled_since.pop(kid, None)
            try:
                await self.shutdown_kernel(kid)
            except Exception as exc:  # noqa: BLE001 - already gone, say
                self.log.warning("kernel %s: cull failed: %s", kid, exc)

    def _pending_pool_ids(self) -> set[str]:
        """Kernels a pool is still starting (their pool task has not finished)."""
        ids: set[str] = set()
        for pool in (getattr(self, "_pools", None) or {}).values():
            if any(not task.done() for task in pool):
                # a starting pool kernel is not known by id yet: spare every kernel that is
                # still starting (no connection file read by a page can exist for it)
                ids |= {kid for kid, km in self._kernels.items()
                        if getattr(km, "execution_state", "") in ("starting", "")}
        return ids

    def _pooled_ids(self) -> set[str]:
        ids: set[str] = set()
        for pool in (getattr(self, "_pools", None) or {}).values():
            for task in pool:
                if task.done() and not task.cancelled() and task.exception() is None:
                    ids.add(task.result().get("kernel_id"))
        return ids

    def _pages_busy(self) -> bool:
        pooled = self._pooled_ids()
        return any(getattr(k, "execution_state", "") == "busy"
                   for kid, k in self._kernels.items() if kid not in pooled)

    def _preheating(self) -> int:
        """Pool kernels starting or still pre-running their notebook."""
        waiting = _waiting_kernel_ids()
        busy = self._starting_preheats
        for pool in (getattr(self, "_pools", None) or {}).values():
            busy += sum(1 for task in pool if task.done() and _pre_running(task, waiting))
        return busy

    async def _wait_for_preheat_slot(self) -> None:
        """At most ``max_concurrent_preheats`` pool kernels start or pre-run at a time.

        After a burst empties a pool, Voilà starts all the replacements at once; on 2 cores
        that many kernels importing pandas at the same time all finish late (some past
        jupyter_server's 60 s kernel_info timeout). Starting them in small waves fills the pool
        sooner and keeps CPU for the pages being served.

        The very first kernel of each pool does not wait: at a cold start the viewer who
        started the runner waits for its pool's first kernel (and the runner counts as ready
        once every pool has one), not for the second kernel of another pool.
        """
        if self._first_of_its_pool():
            return
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and (
                self._firsts_preheating() or (self.max_concurrent_preheats > 0 and
                                              self._preheating() >= self.max_concurrent_preheats)):
            await asyncio.sleep(0.05)

    def _firsts_preheating(self) -> bool:
        """Whether a pool's first kernel is still starting or pre-running its notebook."""
        waiting = _waiting_kernel_ids()
        return any(not task.done() or _pre_running(task, waiting)
                   for task in self._firsts.values())

    def _first_of_its_pool(self) -> bool:
        """Whether the calling pool task is the first kernel its pool ever starts.

        Voilà starts a pool kernel from inside that pool's task, so the current task tells
        which pool is asking.
        """
        task = asyncio.current_task()
        for name, pool in (getattr(self, "_pools", None) or {}).items():
            if task is not None and task in pool and name not in self._firsts:
                self._firsts[name] = task
                return True
        return False

    async def _yield_to_pages(self) -> None:
        """Let pages being rendered (their kernels busy) finish before a pool kernel starts.

        On 2 cores a kernel starting for the pool would take half the CPU from the page that a
        viewer waits for; the pool is refilled a moment later instead.
        """
        deadline = time.monotonic() + self.refill_yield
        while time.monotonic() < deadline and self._pages_busy():
            await asyncio.sleep(0.02)

    def status(self) -> dict[str, Any]:
        """Kernels, pooled kernels per notebook and the kernel client classes in use."""
        pools: dict[str, dict[str, int]] = {}
        pooled: set[str] = set()
        waiting_ids = _waiting_kernel_ids()
        for name, pool in (getattr(self, "_pools", None) or {}).items():
            started = rendered = waiting = 0
            for task in pool:
                content = _started(task) if task.done() else None
                if content is None:
                    continue
                started += 1
                pooled.add(content.get("kernel_id"))
                render = content.get("task")
                if render is not None and render.done():
                    rendered += 1
                if content.get("kernel_id") in waiting_ids:
                    waiting += 1
            pools[name] = {"size": len(pool), "started": started, "rendered": rendered,
                           "waiting": waiting}
        kernels = list(self._kernels)
        clients = sorted({_class_name(getattr(k, "client_factory", None))
                          for k in self._kernels.values()})
        managers = sorted({_class_name(type(k)) for k in self._kernels.values()})
        return {
            "pid": os.getpid(),
            "kernels": len(kernels),
            "in_use": len([k for k in kernels if k not in pooled]),
            "connections": sum(self._kernel_connections.values()),
            "pools": pools,
            "client_classes": clients,
            "kernel_manager_classes": managers,
            "kernel_manager_class": self.kernel_manager_class,
            "unconnected_culled": self.unconnected_culled,
            "forked": sorted(kid for kid, k in self._kernels.items()
                             if getattr(getattr(k, "provisioner", None), "forked", False)),
        }

    def write_status(self) -> None:
        data = self.status()
        text = json.dumps(data, sort_keys=True)
        changed = text != self._last_status
        self._last_status = text
        if self._reporter is not None:
            self._reporter.report(data, sorted(self._kernels), changed)
        if not changed or not self.status_path:
            return
        data["time"] = time.time()
        tmp = f"{self.status_path}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.status_path)

    async def start_kernel(self, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        self._ensure_status_loop()
        preheat = (kwargs.get("env") or {}).get("VOILA_PREHEAT") == "True"
        if preheat:
            await self._yield_to_pages()
            await self._wait_for_preheat_slot()
            self._starting_preheats += 1
            pool_task = asyncio.current_task()
            if pool_task is not None:
                pool_task.add_done_callback(self._pool_kernel_started)
        try:
            kernel_id = await super().start_kernel(*args, **kwargs)
        finally:
            if preheat:
                self._starting_preheats -= 1
        self.write_status()
        return str(kernel_id)

    def _pool_kernel_started(self, pool_task: asyncio.Future[Any]) -> None:
        """Write the status as soon as a pool kernel is started and again once it has
        rendered (the supervisor waits on them; the periodic write lags by up to
        ``status_interval``)."""
        self.write_status()
        content = _started(pool_task)
        render = content.get("task") if content else None
        if isinstance(render, asyncio.Future):
            render.add_done_callback(lambda _: self.write_status())

    async def shutdown_kernel(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        await super().shutdown_kernel(*args, **kwargs)
        self.write_status()
