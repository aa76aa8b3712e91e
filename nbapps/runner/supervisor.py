"""The supervisor: starts, watches, limits, switches and stops app runners (asyncio).

It lives in the gallery's tornado event loop; the gallery sets it as its ``runtime`` and mounts
:func:`nbapps.server.proxy.proxy_routes`. One slot per app slug holds the live runner (serving new
requests), the runner being started, and old runners draining after a switch.

- **First request**: :meth:`Supervisor.route` resolves the slug (the gallery's
  :class:`~.source.AppSource` gives the approved release), starts a runner in the background
  and answers
  ``STARTING``: the proxy shows a page that reloads itself, never a hang or a 502.
- **Health**: every ``sample_interval`` the runners' processes are sampled (RSS, kernels, pool
  status); a dead process or ``health_failures`` failed health checks in a row is a crash: the
  runner is stopped and restarted with backoff while the app is still wanted.
- **Limits**: a page request is refused with ``BUSY`` (the proxy answers 503 + Retry-After) when
  the app has ``max_kernels_per_app`` kernels in use, or when the runners' memory (PSS) plus one
  kernel would exceed ``memory_budget``. Starting a runner evicts idle runners first if needed.
- **Idle**: a runner without requests or connected pages for ``idle_timeout`` is stopped.
- **Switch** (:meth:`Supervisor.deploy`): a new approved version gets its own runner, started
  and warmed (pools rendered) while the old one keeps serving; then new requests go to the new
  runner and the old one drains (requests in flight and connected pages keep using it, kernel
  URLs are routed by kernel id) and stops when unused or after ``drain_timeout``.
- **Shutdown**: :meth:`Supervisor.close` stops every runner. State is kept in the runtime folder
  so that after a SIGKILL of the gallery the next :meth:`Supervisor.start` stops the orphans
  (:mod:`.orphans`) and removes their cgroups.
- **OS bounds**: at start the supervisor finds out whether runners can have cgroups here
  (:func:`nbapps.limits.detect_cgroups`); each runner then gets its own, with per-kernel leaves.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psutil
from tornado import netutil
from tornado.httpclient import AsyncHTTPClient

from .. import limits
from .config import RunnerSettings, prepare_share
from .hub_remote import RemoteHubRunner
from .hub_runner import HubRunner, HubRunnerSettings, reap_hub_servers
from .orphans import clear_state, owner_alive, reap_orphans, write_state
from .process import AppRelease, Runner, RunnerError, RunnerState
from .source import AppSource, Resolver, as_source
from .waiting_room import WaitingRoom

log = logging.getLogger("nbapps.runner")


class LoopbackResolver(netutil.Resolver):
    """Runners listen on 127.0.0.1: skip tornado's getaddrinfo-in-a-thread for every request."""

    async def resolve(self, host: str, port: int,
                      family: socket.AddressFamily = socket.AF_UNSPEC
                      ) -> list[tuple[int, Any]]:
        if host != "127.0.0.1":
            raise OSError(f"runners are on 127.0.0.1, not {host}")
        return [(socket.AF_INET, (host, port))]


@dataclass(frozen=True)
class SupervisorSettings:
    """Limits and timings of the supervisor (the runners' own settings are in ``runner``)."""

    runtime_dir: Path
    runner: RunnerSettings = field(default_factory=RunnerSettings)
    #: stop a runner nobody used for this long (seconds)
    idle_timeout: float = 1800.0
    #: seconds between samples of the runners (memory, kernels, crash detection)
    sample_interval: float = 1.0
    #: seconds between HTTP health checks; that many failures in a row is a crash
    health_interval: float = 5.0
    health_failures: int = 3
    #: kernels in use by pages (pooled kernels not counted) per app before viewers queue
    max_kernels_per_app: int = 40
    #: kernels one viewer may hold in one app (pages beyond it wait for one of theirs to end)
    max_kernels_per_viewer: int = 3
    #: seconds a queued viewer's place is kept without their waiting page asking again
    queue_patience: float = 10.0
    #: memory (PSS) of all runners and kernels in bytes; 0 means half of the physical memory
    memory_budget: int = 0
    #: memory one more kernel is assumed to need when checking the budget
    kernel_memory_estimate: int = 160 * 1024 * 1024
    #: seconds before restart attempt n (the last value repeats)
    restart_backoff: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    #: a draining runner is stopped after this long even if pages still use it
    drain_timeout: float = 3600.0
    #: the Retry-After of the starting and busy pages
    retry_after: int = 2
    #: how long a page request may wait for a starting runner before the starting page
    start_wait: float = 0.0
    #: runner logs (``<runtime>/logs``) older than this many days are deleted at start
    log_days: float = 7.0
    #: give each runner (and kernel) a cgroup when the machine allows it
    cgroups: bool = True
    #: a cgroup v2 folder delegated to the gallery (empty: the gallery's own cgroup)
    cgroup_parent: str = ""
    #: start runners as JupyterHub named servers (:mod:`.hub_runner`); None: local processes
    hub: HubRunnerSettings | None = None

    def budget(self) -> int:
        if self.memory_budget > 0:
            return self.memory_budget
        return _half_of_memory()


def _prune_logs(folder: Path, days: float) -> None:
    if not folder.is_dir():
        return
    limit = time.time() - days * 86400
    for log_file in folder.glob("*.log"):
        with contextlib.suppress(OSError):
            if log_file.stat().st_mtime < limit:
                log_file.unlink()


@functools.lru_cache(maxsize=1)
def _half_of_memory() -> int:
    return int(psutil.virtual_memory().total // 2)


class RouteKind(str, Enum):
    READY = "ready"
    STARTING = "starting"
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    MISSING = "missing"


@dataclass
class Route:
    """Where a page request goes: a ready runner, or a page the proxy answers itself."""

    kind: RouteKind
    runner: Runner | None = None
    title: str = ""
    retry_after: int = 2
    reason: str = ""
    #: the viewer's place in the app's queue (1 is next; 0: not queued)
    place: int = 0
    #: the admitted page's handle among its viewer's pages (runner.pages; 0: none)
    page: int = 0


@dataclass
class AppSlot:
    """Everything the supervisor holds for one app slug."""

    slug: str
    release: AppRelease
    live: Runner | None = None
    pending: Runner | None = None
    #: the start of a runner of ``release`` (a running start always starts ``release``)
    starting: asyncio.Task[None] | None = None
    draining: list[Runner] = field(default_factory=list)
    drain_started: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    last_request: float = field(default_factory=time.monotonic)
    #: viewers waiting for a kernel, in arrival order (nbapps.runner.waiting_room; made with
    #: the settings' patience by :meth:`Supervisor._new_slot`)
    waiting: WaitingRoom = field(default_factory=lambda: WaitingRoom(
        SupervisorSettings.queue_patience))

    def runners(self) -> list[Runner]:
        return [r for r in (self.live, self.pending, *self.draining) if r is not None]

    @property
    def title(self) -> str:
        for r in self.runners():
            if r.info is not None:
                return r.info.title
        return self.release.title or self.slug


class Supervisor:
    """Runs one standalone Voilà runner per live app version (see the module docstring)."""

    def __init__(self, settings: SupervisorSettings, source: AppSource | Resolver) -> None:
        self.settings = settings
        self.source = as_source(source)
        #: where runners get cgroups (None: rlimits only), found at :meth:`start`
        self.cgroups: limits.CgroupSupport | None = None
        self.cgroups_reason = "not started"
        self._slots: dict[str, AppSlot] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self._share: Path | None = None
        self._fontawesome = False
        self._last_state = ""
        self._last_health = 0.0
        self._closed = False
        self.http: AsyncHTTPClient | None = None
        #: called with each runner as its start begins (the gallery warms its asset memory)
        self.starting_hooks: list[Callable[[Runner], object]] = []
        self.counters: dict[str, int] = {"starts": 0, "crashes": 0, "restarts": 0,
                                         "idle_stops": 0, "switches": 0, "busy": 0,
                                         "viewer_limit": 0}

    # -- life cycle --------------------------------------------------------------------------
    @property
    def runtime_dir(self) -> Path:
        return self.settings.runtime_dir

    async def start(self) -> None:
        """Reap a previous gallery's orphans, prepare the template folder, start the loop."""
        rt = self.runtime_dir
        if self.settings.hub is not None:
            self.settings.hub.check()
        rt.mkdir(parents=True, exist_ok=True)
        other = owner_alive(rt)
        if other is not None:
            raise RunnerError(f"gallery process {other} already runs apps from {rt}",
                              code="NBA403")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, reap_orphans, rt)
        if self.settings.hub is not None:
            await reap_hub_servers(self.settings.hub, rt)
        if self.settings.cgroups:
            self.cgroups, self.cgroups_reason = limits.detect_cgroups(self.settings.cgroup_parent)
            await loop.run_in_executor(None, limits.reap_groups, self.cgroups, rt, set())
        else:
            self.cgroups, self.cgroups_reason = None, "turned off"
        if self.cgroups is None:
            log.info("app runners get no cgroups (%s): kernels are bounded by rlimits only",
                     self.cgroups_reason)
        await loop.run_in_executor(None, _prune_logs, rt / "logs", self.settings.log_days)
        self._share, self._fontawesome = prepare_share(rt)
        write_state(rt, [])
        self.http = AsyncHTTPClient(force_instance=True, max_clients=1000,
                                    resolver=LoopbackResolver())
        self._task = asyncio.ensure_future(self._loop())

    @property
    def accepting(self) -> bool:
        """Started, not closed, and its supervision loop alive (``/readyz``)."""
        return self._task is not None and not self._task.done() and not self._closed

    async def close(self) -> None:
        """Stop every runner (used at gallery shutdown)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        starting = [s.starting for s in self._slots.values()
                    if s.starting is not None and not s.starting.done()]
        for task in starting:
            task.cancel()
        if starting:
            await asyncio.gather(*starting, return_exceptions=True)
        runners = [r for s in self._slots.values() for r in s.runners()]
        await asyncio.gather(*(r.stop() for r in runners), return_exceptions=True)
        self._slots.clear()
        limits.remove_groups(self.cgroups, self.runtime_dir)
        clear_state(self.runtime_dir)
        if self.http is not None:
            self.http.close()
            self.http = None

    # -- routing (called by the proxy) -----------------------------------------------------------
    async def _resolve(self, slug: str) -> AppRelease | None:
        return await self.source.resolve(slug)

    async def slot_for(self, slug: str) -> AppSlot | None:
        """The slot of ``slug``, resolving the app's live release on first use."""
        slot = self._slots.get(slug)
        if slot is not None:
            return slot
        lock = self._locks.setdefault(slug, asyncio.Lock())
        async with lock:
            slot = self._slots.get(slug)
            if slot is None:
                release = await self._resolve(slug)
                if release is None:
                    return None
                slot = self._slots[slug] = self._new_slot(slug, release)
        return slot

    async def route(self, slug: str, viewer: str | None = None,
                    place: str | None = None) -> Route:
        """Where a new page request for ``slug`` goes (admits it to a ready runner).

        ``viewer`` names who asks (for the per-viewer bound); ``place`` keys their place in
        the app's queue when it is full (their page's ticket; None: no place is kept, the
        request only gets in when nobody waits).
        """
        if self._closed:
            return Route(RouteKind.UNAVAILABLE, title=slug, reason="the server is stopping")
        try:
            slot = await self.slot_for(slug)
        except Exception as exc:  # the catalog or the bundle store failed: not a 500
            log.error("cannot resolve app %s: %s", slug, exc)
            return Route(RouteKind.UNAVAILABLE, title=slug,
                         retry_after=self.settings.retry_after * 5,
                         reason="the app's approved version could not be loaded")
        if slot is None:
            return Route(RouteKind.MISSING, title=slug)
        now = time.monotonic()
        slot.last_request = now
        retry = self.settings.retry_after
        runner = slot.live
        if runner is not None and not runner.alive():
            self._on_crash(slot, runner, "process exited")
            runner = None
        if runner is None and self.settings.start_wait > 0:
            refused = self._ensure_starting(slot)
            if refused is None and slot.starting is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(slot.starting),
                                           self.settings.start_wait)
                runner = slot.live
        if runner is not None and runner.state == RunnerState.READY:
            return self._admit(slot, runner, viewer, place)
        refused = self._ensure_starting(slot)
        if refused:
            self.counters["busy"] += 1
            return Route(RouteKind.BUSY, title=slot.title, retry_after=retry * 3, reason=refused)
        if slot.failures:
            return Route(RouteKind.UNAVAILABLE, title=slot.title,
                         retry_after=max(retry, int(slot.retry_at - now) + 1),
                         reason=slot.last_error)
        return Route(RouteKind.STARTING, title=slot.title, retry_after=retry)

    def served_releases(self) -> dict[str, str]:
        """``{slug: version}`` of the release each app slot serves (or is switching to): what
        the gallery compares with the catalog to follow changes made by other replicas."""
        return {slug: slot.release.version for slug, slot in self._slots.items()}

    def runner_by_id(self, runner_id: str) -> Runner | None:
        """The runner ``runner_id`` while it is this gallery's (starting, serving, draining)."""
        for slot in self._slots.values():
            for runner in slot.runners():
                if runner.id == runner_id:
                    return runner
        return None

    def knows(self, slug: str) -> bool:
        """Whether ``slug`` has been resolved to an app (it may not be running)."""
        return slug in self._slots

    def runner_for(self, slug: str, kernel_id: str | None = None) -> Runner | None:
        """The runner for a request that is not a new page (assets, kernel calls, sockets).

        Kernel URLs go to the runner that owns the kernel (an old version while it drains).
        """
        slot = self._slots.get(slug)
        if slot is None:
            return None
        if kernel_id:
            for r in slot.runners():
                if r.alive() and r.owns_kernel(kernel_id):
                    return r
        live = slot.live
        if live is not None and live.alive() and live.state == RunnerState.READY:
            live.last_used = time.monotonic()
            return live
        return None

    def _admit(self, slot: AppSlot, runner: Runner, viewer: str | None,
               place: str | None) -> Route:
        """Admit a page to a ready runner, or say where it waits: behind the viewer's own
        pages (the per-viewer bound) or in the app's queue (its kernel and memory limits)."""
        s = self.settings
        retry = s.retry_after
        now = time.monotonic()
        if viewer and s.max_kernels_per_viewer > 0:
            held = runner.pages.count(viewer, now)
            if held >= s.max_kernels_per_viewer:
                self.counters["viewer_limit"] += 1
                return Route(RouteKind.BUSY, title=slot.title, retry_after=retry * 3,
                             reason=f"You have {held} pages of this app open already; close "
                                    "one of them and this page opens.")
        free, reason = self._free_kernels(runner)
        room = slot.waiting
        room.prune(now)
        if place is None:
            admitted = free > len(room)
            position = 0
        else:
            position = room.place(place, now) if (place in room or free <= len(room)) else 0
            admitted = position <= free
        if not admitted:
            self.counters["busy"] += 1
            return Route(RouteKind.BUSY, title=slot.title, retry_after=retry,
                         reason=reason, place=position)
        if place is not None:
            room.leave(place)
        page = runner.admit(viewer)
        return Route(RouteKind.READY, runner=runner, title=slot.title, page=page)

    def _free_kernels(self, runner: Runner) -> tuple[int, str]:
        """How many more pages the runner may take now, and why not more."""
        s = self.settings
        if self.total_memory() + s.kernel_memory_estimate > s.budget():
            return 0, "The server has reached its memory budget for apps."
        free = s.max_kernels_per_app - runner.in_use()
        return max(free, 0), (f"It has reached its limit of {s.max_kernels_per_app} "
                              "simultaneous viewers.")

    def queue_length(self, slug: str) -> int:
        """Viewers waiting for a kernel of ``slug`` now."""
        slot = self._slots.get(slug)
        if slot is None:
            return 0
        slot.waiting.prune()
        return len(slot.waiting)

    def total_rss(self) -> int:
        return sum(r.stats.rss for s in self._slots.values() for r in s.runners())

    def total_memory(self) -> int:
        """Memory used by all runners (PSS: forked kernels' shared pages count once)."""
        return sum(r.stats.memory for s in self._slots.values() for r in s.runners())

    # -- starting and switching -----------------------------------------------------------------
    def _new_slot(self, slug: str, release: AppRelease) -> AppSlot:
        return AppSlot(slug, release, waiting=WaitingRoom(self.settings.queue_patience))

    def _new_runner(self, release: AppRelease) -> Runner:
        assert self._share is not None, "Supervisor.start() was not called"
        settings = self.settings.runner
        if release.pool_sizes is not None:
            default, custom = release.pool_sizes
            settings = dataclasses.replace(settings, pool_size=default, custom_pool_size=custom)
        kwargs: dict[str, Any] = {
            "fontawesome": self._fontawesome, "cgroups": self.cgroups,
            "memory_budget": self.settings.budget(),
            "kernel_cap": self.settings.max_kernels_per_app}
        hub = self.settings.hub
        if hub is not None:
            kind = RemoteHubRunner if hub.files == "fetch" else HubRunner
            return kind(release, settings, self.runtime_dir, self._share, hub=hub, **kwargs)
        return Runner(release, settings, self.runtime_dir, self._share, **kwargs)

    def _room_for_runner(self, slot: AppSlot) -> str | None:
        """Make room in the memory budget for a new runner (evict idle ones) or say why not."""
        s = self.settings
        need = s.kernel_memory_estimate * (1 + s.runner.pool_size + s.runner.custom_pool_size)
        if self.total_memory() + need <= s.budget():
            return None
        idle = sorted((o.live for o in self._slots.values()
                       if o is not slot and o.live is not None and not o.live.busy()),
                      key=lambda r: r.last_used)
        freed = 0
        for r in idle:
            if self.total_memory() - freed + need <= s.budget():
                break
            freed += r.stats.memory
            other = self._slots.get(r.slug)
            if other is not None and other.live is r:
                other.live = None
            log.info("evicting idle runner %s to make room for %s", r.id, slot.slug)
            asyncio.ensure_future(r.stop())
        if self.total_memory() - freed + need <= s.budget():
            return None
        return "The server has reached its memory budget for apps."

    def _ensure_starting(self, slot: AppSlot) -> str | None:
        """Start a runner for ``slot`` unless one is starting or backoff says wait."""
        if slot.starting is not None and not slot.starting.done():
            return None
        if self._closed or time.monotonic() < slot.retry_at:
            return None
        refused = self._room_for_runner(slot)
        if refused:
            return refused
        slot.starting = asyncio.ensure_future(self._start_runner(slot, slot.release, warm=False))
        # a failed start is logged by _start_runner; requests may stop waiting before it ends,
        # so mark its exception retrieved (else "Task exception was never retrieved")
        slot.starting.add_done_callback(
            lambda t: None if t.cancelled() else t.exception())
        return None

    async def _start_runner(self, slot: AppSlot, release: AppRelease, *, warm: bool) -> None:
        runner = self._new_runner(release)
        slot.pending = runner
        for hook in self.starting_hooks:
            try:
                hook(runner)
            except Exception:  # a hook's failure is never the start's
                log.exception("runner starting hook failed")
        self.counters["starts"] += 1
        if slot.failures:
            self.counters["restarts"] += 1
        try:
            await runner.start(rendered=warm)
        except asyncio.CancelledError:
            slot.pending = None
            raise
        except Exception as exc:
            slot.pending = None
            slot.failures += 1
            backoff = self.settings.restart_backoff
            slot.retry_at = time.monotonic() + backoff[min(slot.failures, len(backoff)) - 1]
            slot.last_error = exc.message if hasattr(exc, "message") else str(exc)
            log.error("runner for %s failed to start (attempt %d): %s", slot.slug,
                      slot.failures, slot.last_error)
            await asyncio.get_running_loop().run_in_executor(None, runner.sample)
            await runner.stop(remove=True)
            self._persist()
            raise
        slot.pending = None
        old = slot.live
        runner.last_used = time.monotonic()
        slot.live = runner
        slot.release = release
        slot.failures = 0
        slot.last_error = ""
        if old is not None:
            self._drain(slot, old)
        await asyncio.get_running_loop().run_in_executor(None, runner.sample)
        self._persist()

    def _drain(self, slot: AppSlot, runner: Runner) -> None:
        runner.state = RunnerState.DRAINING
        slot.draining.append(runner)
        slot.drain_started[runner.id] = time.monotonic()
        log.info("runner %s draining (%d requests, %d sockets)", runner.id,
                 runner.active_requests, runner.open_websockets)

    async def deploy(self, release: AppRelease) -> None:
        """Make ``release`` the live version of its app with zero failed requests.

        If the app runs, a new runner is started and warmed while the old one serves; new
        requests then go to the new runner and the old one drains. If the app does not run, the
        release is only recorded (it starts on its first request). Raises if the new runner
        fails to start (the old one keeps serving).
        """
        slot = self._slots.get(release.slug)
        if slot is None:
            self._slots[release.slug] = self._new_slot(release.slug, release)
            return
        if slot.live is not None and slot.live.release.version == release.version:
            slot.release = release
            return
        if slot.starting is not None and not slot.starting.done() \
                and slot.release.version == release.version:
            # already starting it (a replica hears of its own decision too): join that start
            slot.release = release
            await asyncio.shield(slot.starting)
            return
        slot.release = release
        if slot.starting is not None and not slot.starting.done():
            slot.starting.cancel()
            await asyncio.gather(slot.starting, return_exceptions=True)
        if slot.live is None:
            return  # starts with the new release on the next request
        self.counters["switches"] += 1
        slot.starting = asyncio.ensure_future(self._start_runner(slot, release, warm=True))
        await asyncio.shield(slot.starting)

    async def refresh(self, slug: str) -> None:
        """Re-resolve ``slug`` and switch to its live version (or retire it if none).

        What the gallery calls after an approval, a rollback or an unpublish (it may take as
        long as a runner start: run it in the background, e.g. ``asyncio.ensure_future``).
        """
        release = await self._resolve(slug)
        if release is None:
            await self.retire(slug)
        else:
            await self.deploy(release)

    async def retire(self, slug: str) -> None:
        """Stop serving ``slug`` (unpublished): its runners stop now."""
        slot = self._slots.pop(slug, None)
        if slot is None:
            return
        if slot.starting is not None and not slot.starting.done():
            slot.starting.cancel()
            await asyncio.gather(slot.starting, return_exceptions=True)
        await asyncio.gather(*(r.stop() for r in slot.runners()), return_exceptions=True)
        self._persist()

    async def ensure_ready(self, slug: str, *, warm: bool = True,
                           timeout: float = 120.0) -> Runner:
        """Start ``slug``'s runner if needed and wait until it serves (tests, eager starts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            slot = await self.slot_for(slug)
            if slot is None:
                raise RunnerError(f"no app '{slug}'", code="NBA400")
            slot.last_request = time.monotonic()
            live = slot.live
            if live is not None and live.alive() and live.state == RunnerState.READY:
                if not warm or live.pools_ready(rendered=True):
                    return live
            else:
                refused = self._ensure_starting(slot)
                if refused:
                    raise RunnerError(refused, code="NBA402")
                if slot.starting is not None:
                    await asyncio.wait([slot.starting], timeout=max(deadline - time.monotonic(),
                                                                    0.01))
            await asyncio.sleep(0.05)
        raise RunnerError(f"app '{slug}' not ready after {timeout:.0f}s", code="NBA401")

    # -- watching ----------------------------------------------------------------------------------
    def _on_crash(self, slot: AppSlot, runner: Runner, why: str) -> None:
        if slot.live is runner:
            slot.live = None
        self.counters["crashes"] += 1
        slot.failures += 1
        backoff = self.settings.restart_backoff
        slot.retry_at = time.monotonic() + backoff[min(slot.failures, len(backoff)) - 1]
        slot.last_error = f"the app's runner stopped ({why})"
        log.error("runner %s of %s crashed (%s); restart in %.0fs", runner.id, slot.slug, why,
                  slot.retry_at - time.monotonic())
        runner.state = RunnerState.FAILED
        asyncio.ensure_future(runner.stop())
        self._persist()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("supervisor tick failed")
            await asyncio.sleep(self.settings.sample_interval)

    async def tick(self) -> None:
        """One round of sampling, crash/health/idle/drain checks and restarts."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        s = self.settings
        runners = [r for slot in self._slots.values() for r in slot.runners()
                   if r.pid is not None]
        if runners:
            await asyncio.gather(*(loop.run_in_executor(None, r.sample) for r in runners))
        check_health = now - self._last_health >= s.health_interval
        if check_health:
            self._last_health = now
        for slot in list(self._slots.values()):
            live = slot.live
            if live is not None and live.state == RunnerState.READY:
                if not live.alive():
                    self._on_crash(slot, live, f"exit status {live.proc.returncode}"
                                   if live.proc else "no process")
                elif check_health:
                    if await live.check_health():
                        live.health_failures = 0
                    else:
                        live.health_failures += 1
                        if live.health_failures >= s.health_failures:
                            self._on_crash(slot, live, "health checks failed")
            live = slot.live
            if (live is not None and not live.busy()
                    and now - max(live.last_used, slot.last_request) > s.idle_timeout):
                log.info("runner %s idle for %.0fs: stopping", live.id, s.idle_timeout)
                self.counters["idle_stops"] += 1
                slot.live = None
                await live.stop()
            for old in list(slot.draining):
                started = slot.drain_started.get(old.id, now)
                if not old.busy() or not old.alive() or now - started > s.drain_timeout:
                    slot.draining.remove(old)
                    slot.drain_started.pop(old.id, None)
                    asyncio.ensure_future(old.stop())
            recently_wanted = now - slot.last_request < s.idle_timeout
            if (slot.live is None and slot.failures and recently_wanted
                    and now >= slot.retry_at):
                self._ensure_starting(slot)
            if (slot.live is None and not slot.draining and slot.pending is None
                    and (slot.starting is None or slot.starting.done())
                    and not recently_wanted):
                self._slots.pop(slot.slug, None)
        self._persist()

    def _persist(self) -> None:
        records = [r.record() for slot in self._slots.values() for r in slot.runners()
                   if r.pid is not None]
        key = repr([(x["id"], x["pid"]) for x in records])
        if key == self._last_state:
            return
        self._last_state = key
        write_state(self.runtime_dir, records)

    # -- reporting ---------------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Per app: version, state, kernels, RSS, requests and sockets (for metrics/admin)."""
        out = []
        for slot in self._slots.values():
            for r in slot.runners():
                out.append({
                    "slug": slot.slug, "version": r.release.version, "runner": r.id,
                    "state": r.state.value, "pid": r.pid, "port": r.port,
                    "kernels": r.stats.kernels, "kernels_in_use": r.stats.in_use,
                    "rss": r.stats.rss, "memory": r.stats.memory,
                    "active_requests": r.active_requests,
                    "open_websockets": r.open_websockets, "failures": slot.failures,
                })
        return out
