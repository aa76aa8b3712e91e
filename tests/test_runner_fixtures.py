"""Shared support for the runner and proxy tests (and benchmarks/serve.py): no tests here.

:class:`Gallery` is a minimal tornado app that mounts the proxy with one line, in an event loop
running in a background thread, so tests can keep real runners up for a whole module and talk to
them with ordinary blocking clients. Every process it starts is stopped in ``stop()``; the
fixtures call it in ``finally`` blocks.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
import psutil
import tornado.httpserver
import tornado.netutil
import tornado.web
from nbformat.v4 import new_code_cell, new_markdown_cell

from nbapps.contract import read_parameters_cell
from nbapps.runner import AppRelease, RunnerSettings, Supervisor, SupervisorSettings
from nbapps.server.asset_warmup import RememberedAssets
from nbapps.server.proxy import proxy_routes
from nbapps.server.proxy_shared import ProxyConfig
from tests.nbfactory import make_notebook, write_notebook

PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def widget_app_notebook(extra: list[Any] | None = None) -> nbformat.NotebookNode:
    """A small widget app: parameters, a hidden computation, widget cells, a final marker."""
    nb = make_notebook(
        params='n = 3  # how many\nlabel = "x"  # a label\nrate = 0.5  # a rate\n',
        extra=["import os, time\nsquare = n * n\nprint('HIDDEN-OUTPUT', square)", *(extra or [])],
        meta={"parameters": {"rate": {"min": 0, "max": 1}}},
    )
    nb.cells.append(new_markdown_cell("## Result", metadata={"tags": ["widget"]}))
    nb.cells.append(new_code_cell(
        # one write per line: print(a, b, ...) writes piece by piece, and the kernel's output
        # timer may send the pieces as separate outputs (Voilà does not merge them)
        "print(f'RESULT {n} {label} {rate} {square}')\n"
        "print('SECRET', os.environ.get('NBAPPS_TEST_SECRET'))\n"
        "print('DONE-AT', time.time())",
        metadata={"tags": ["widget"]},
    ))
    return nb


def write_bundle(folder: Path, nb: nbformat.NotebookNode, files: dict[str, bytes] | None = None
                 ) -> Path:
    """An approved-bundle-like folder: app.ipynb, manifest.json (parameters), data files."""
    folder.mkdir(parents=True, exist_ok=True)
    write_notebook(nb, folder / "app.ipynb")
    write_notebook(nb, folder / "executed.ipynb")
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    params, _ = read_parameters_cell(cells[0].source) if cells else ([], [])
    from nbapps.contract import apply_constraints

    constraints = nb.metadata.get("nbapps", {}).get("parameters", {})
    params, _ = apply_constraints(params, constraints)
    manifest = {"notebook": "app.ipynb", "parameters": [p.to_dict() for p in params]}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "thumbnail.png").write_bytes(PNG_1PX)
    for name, data in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


class LoopThread:
    """An asyncio event loop in a daemon thread; ``run(coro)`` waits for a result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 300) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Gallery:
    """A minimal gallery: the proxy mounted on a tornado app, a supervisor, some apps."""

    def __init__(
        self,
        root: Path,
        apps: dict[str, Path],
        *,
        runner: RunnerSettings | None = None,
        authorize: Callable[[tornado.web.RequestHandler, str], bool] | None = None,
        extra_handlers: list[Any] | None = None,
        remembered: RememberedAssets | None = None,
        **settings: Any,
    ) -> None:
        self.root = root
        self.apps = dict(apps)
        self.versions: dict[str, str] = {slug: "v1" for slug in apps}
        self.authorize = authorize or (lambda handler, slug: True)
        runner = runner or RunnerSettings(pool_size=1, custom_pool_size=1)
        self.settings = SupervisorSettings(runtime_dir=root / "runtime", runner=runner,
                                           **settings)
        self.extra_handlers = extra_handlers or []
        self.remembered = remembered
        #: what the proxy handlers share (its asset memory, tickets), once started
        self.proxy_config: ProxyConfig | None = None
        self.loop = LoopThread()
        self.supervisor: Supervisor | None = None
        self.server: tornado.httpserver.HTTPServer | None = None
        self.port = 0
        self.observed: list[tuple[str, str, int, float]] = []

    def resolve(self, slug: str) -> AppRelease | None:
        folder = self.apps.get(slug)
        if folder is None:
            return None
        return AppRelease(slug, self.versions[slug], folder)

    async def _start(self) -> None:
        self.supervisor = Supervisor(self.settings, self.resolve)
        await self.supervisor.start()
        handlers = proxy_routes(
            self.supervisor, lambda h, s: self.authorize(h, s),
            observe=lambda *a: self.observed.append(a), remembered=self.remembered,
        )
        self.proxy_config = handlers[0][2]["config"]
        handlers += self.extra_handlers
        app = tornado.web.Application(handlers)
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.server = tornado.httpserver.HTTPServer(app)
        self.server.add_sockets(sockets)

    def start(self) -> Gallery:
        self.loop.run(self._start())
        return self

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.supervisor is not None:
            await self.supervisor.close()

    def stop(self) -> None:
        try:
            self.loop.run(self._stop(), timeout=120)
        finally:
            self.loop.close()
            kill_strays(self.root)

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def ready(self, slug: str, warm: bool = True, timeout: float = 180) -> Any:
        assert self.supervisor is not None
        return self.loop.run(self.supervisor.ensure_ready(slug, warm=warm, timeout=timeout),
                             timeout=timeout + 10)

    def wait_warm(self, slug: str, timeout: float = 120) -> None:
        """Wait until the live runner's pools are full again (after requests used them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runner = self.ready(slug, warm=False)
            if runner.pools_ready(rendered=True):
                return
            time.sleep(0.1)
        raise TimeoutError(f"pools of {slug} not refilled after {timeout}s")

    def deploy(self, slug: str, version: str, folder: Path, *, at_once: int = 1) -> None:
        """Deploy a new version; ``at_once``: that many times at the same moment (as when a
        replica hears of its own decision while it already switches)."""
        supervisor = self.supervisor
        assert supervisor is not None
        self.apps[slug] = folder
        self.versions[slug] = version
        release = AppRelease(slug, version, folder)

        async def deploys() -> None:
            await asyncio.gather(*(supervisor.deploy(release) for _ in range(at_once)))

        self.loop.run(deploys(), timeout=300)


def kill_strays(root: Path) -> None:
    """Kill any process whose command line mentions ``root`` (safety net for fixtures)."""
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != me and any(str(root) in part for part in (p.info["cmdline"] or [])):
                os.kill(p.pid, signal.SIGKILL)
        except (psutil.Error, OSError):
            pass


def fast_settings(**kw: Any) -> RunnerSettings:
    return replace(RunnerSettings(pool_size=1, custom_pool_size=1), **kw)
