"""``/readyz``: may this replica take traffic? (``/healthz`` stays pure liveness.)

Three checks, each with its own short timeout, answered together:

- ``catalog``: the database answers ``SELECT 1``;
- ``store``: the bundle store's root can be listed (a removed or unreadable folder, a bucket
  that is gone or refuses us);
- ``runtime``: the app runner supervisor is started and its loop alive, and the check pool has
  recovered its queue (a gallery without apps or checks reports what it has).

The catalog and store checks run on their own daemon threads, never on the event loop: a hung
NFS mount or database connection makes the check fail after its timeout, the probe answers, and
the stuck call is not started again while it is still running (the next probe waits on the same
call), so a stall cannot pile up threads. The body says each check's state and time in seconds,
and for a failure only a short reason (an exception class or "timed out"): no paths, URLs or
secrets.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ClassVar

from .authz import PUBLIC, Requirement
from .base import APIHandler
from .routes import Op

#: seconds each check may take (``NbappsServer.readiness_timeout``)
DEFAULT_TIMEOUT = 2.0


def _in_thread(fn: Callable[[], Any], name: str) -> Future[Any]:
    future: Future[Any] = Future()

    def run() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting probe
            future.set_exception(exc)

    threading.Thread(target=run, name=f"nbapps-ready-{name}", daemon=True).start()
    return future


def _store_check(store: Any) -> bool:
    """List the store's root (fsspec; its listing cache dropped first, as s3fs keeps one)."""
    fs, root = store.fs, store.root
    fs.invalidate_cache(root)
    fs.ls(root, detail=False)
    return True


def _runtime_state(ctx: Any) -> tuple[bool, str]:
    runtime = ctx.runtime
    if runtime is not None:
        accepting = getattr(runtime, "accepting", True)
        if not accepting:
            return False, "app runtime not running"
    checks = ctx.checks
    if checks is not None and not checks.wait_ready(0):
        return False, "check pool not ready"
    return True, ""


class Readiness:
    """The checks of one server; keeps at most one call of each blocking check in flight."""

    def __init__(self, ctx: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.ctx = ctx
        self.timeout = timeout
        self._running: dict[str, Future[Any]] = {}

    def _blocking(self, name: str, fn: Callable[[], Any]) -> Future[Any]:
        future = self._running.get(name)
        if future is None or future.done():
            future = self._running[name] = _in_thread(fn, name)
        return future

    async def _check(self, name: str, fn: Callable[[], Any]) -> dict[str, Any]:
        t0 = time.perf_counter()
        state: dict[str, Any] = {"ok": False}
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(self._blocking(name, fn)),
                                            self.timeout)
            state["ok"] = bool(result)
            if not result:
                state["error"] = "not reachable"
        except asyncio.TimeoutError:
            state["error"] = f"timed out after {self.timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - the class names the failure, no details
            state["error"] = type(exc).__name__
        state["seconds"] = round(time.perf_counter() - t0, 4)
        return state

    async def run(self) -> dict[str, dict[str, Any]]:
        ctx = self.ctx
        catalog, store = self._check("catalog", ctx.catalog.ping), \
            self._check("store", lambda: _store_check(ctx.store))
        t0 = time.perf_counter()
        ok, why = _runtime_state(ctx)
        runtime: dict[str, Any] = {"ok": ok, "seconds": round(time.perf_counter() - t0, 4)}
        if why:
            runtime["error"] = why
        results = await asyncio.gather(catalog, store)
        return {"catalog": results[0], "store": results[1], "runtime": runtime}


class ReadyHandler(APIHandler):
    """Readiness of this replica: 200 when catalog, store and runtime all answer, else 503."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("Readiness: catalog, store and app runtime.")}

    async def get(self) -> None:
        readiness = self.settings.get("nbapps_readiness")
        if readiness is None:
            readiness = self.settings["nbapps_readiness"] = Readiness(
                self.ctx, float(self.settings.get("nbapps_readiness_timeout", DEFAULT_TIMEOUT)))
        checks = await readiness.run()
        failed = [name for name, state in checks.items() if not state["ok"]]
        body: dict[str, Any] = {"status": "unready" if failed else "ready", "checks": checks}
        if failed:
            body["failed"] = failed
        self.write_json(body, status=503 if failed else 200)
