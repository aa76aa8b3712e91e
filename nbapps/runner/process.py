"""One runner: a standalone ``python -m voila`` child process serving one approved app version.

A runner owns a private folder under the runtime root::

    <runtime>/runners/<id>/
        app/            read-only copy of the approved bundle + the served notebook variants
        config/voila.py generated configuration (holds the token; deleted once Voilà has read it)
        conn/           kernel connection files (their paths identify the runner's kernels)
        jupyter/        the process's Jupyter runtime and data dirs
        status.json     written by the runner's kernel manager (kernels, pools, client classes)
        limits.json     the OS bounds its launcher applies (:mod:`nbapps.limits`), and
        limits-applied.json   what the launcher could apply
        template.json   the kernel template's configuration (:mod:`.forkserver`)
    <runtime>/logs/<id>.log   the process's output (kept after the runner stops)

The process is ``python -m nbapps.runner.launch`` (inside ``python -m nbapps.sandbox`` when
confined), which applies the runner's OS bounds, starts the kernel template and becomes Voilà.

Voilà listens on 127.0.0.1 on a free port with ``base_url=/apps/<slug>/`` and a random token
that only the gallery's proxy knows; requests without it are refused by jupyter_server's
identity provider. The process runs in its own session (process group) with the allowlisted
environment of :mod:`.env`.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import nbformat
import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .. import limits, sandbox
from ..contract import ParameterContract
from ..errors import BundleError, NbappsError
from ..files import make_read_only, remove_tree
from ..processes import kill_processes
from .admission import Admissions, Lease
from .config import TEMPLATE_NAME, RunnerSettings, voila_config
from .env import runner_environment
from .fetch import fetch
from .kernel_setup import KernelSetup, kernel_setup
from .notebook_variants import CUSTOM_NAME, DEFAULT_NAME, VARIANT_NAMES, build_variants
from .status_report import tree_memory
from .viewer_pages import ViewerPages

log = logging.getLogger("nbapps.runner")

MANIFEST = "manifest.json"
DEFAULT_NOTEBOOK = "app.ipynb"
HEALTH_PATH = f"voila/templates/{TEMPLATE_NAME}/static/health.txt"
#: seconds a draining runner is kept after a page without a viewer was served there (such
#: pages are not tracked one by one; a page connects within seconds of being served)
ANONYMOUS_PAGE_GRACE = 30.0
KERNEL_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ids = itertools.count(1)


@functools.cache
def _warn_no_sandbox() -> None:
    log.warning("Landlock is not available on this system: app runners start without the "
                "file-system sandbox, so app code can read the gallery's files")


class RunnerError(NbappsError):
    """A runner could not be prepared or started."""

    code = "NBA400"
    http_status = 503


@dataclass(frozen=True)
class AppRelease:
    """An approved app version to serve: ``bundle_dir`` is an extracted, approved bundle."""

    slug: str
    version: str
    bundle_dir: Path
    #: what the waiting pages call it before the runner has read the notebook's title
    title: str = ""
    #: preheated kernels (default-parameter pages, custom-parameter pages) for this release
    #: only; None: the runtime's (a reviewer's preview needs one, not a live app's pools)
    pool_sizes: tuple[int, int] | None = None


@dataclass(frozen=True)
class AppInfo:
    """What the proxy needs to know about the served app (read from the bundle)."""

    contract: ParameterContract
    has_custom: bool
    has_widget_cells: bool
    cell_timeout: float | None
    title: str = ""


class RunnerState(str, Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class RunnerStats:
    """A sample of a runner's processes (from /proc via psutil) and its status file."""

    rss: int = 0
    #: memory actually used: the sum of PSS (a page shared by forked kernels counts once,
    #: split between them; the RSS sum counts it in each), RSS where PSS cannot be read
    memory: int = 0
    processes: int = 0
    kernels: int = 0
    in_use: int = 0
    pools: dict[str, dict[str, int]] = field(default_factory=dict)
    client_classes: list[str] = field(default_factory=list)
    #: when the runner wrote the status this sample read (wall clock)
    time: float = 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _copy_read_only(src: Path, dest: Path) -> None:
    """Copy the bundle folder ``src`` to ``dest``, refusing links and special files."""
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dest / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs + files:
            p = Path(root) / name
            mode = p.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise BundleError(f"bundle holds a link or special file: {p.relative_to(src)}",
                                  code="NBA204")
        for name in files:
            shutil.copyfile(Path(root) / name, dest / rel / name)


def read_app(app_dir: Path) -> tuple[nbformat.NotebookNode, list[dict[str, Any]], str]:
    """The app notebook, its parameter contract (list of dicts) and file name, from a bundle."""
    manifest: dict[str, Any] = {}
    mpath = app_dir / MANIFEST
    if mpath.is_file():
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BundleError(f"{MANIFEST} is not valid JSON: {exc}") from exc
    name = str(manifest.get("notebook") or DEFAULT_NOTEBOOK)
    nb_path = app_dir / name
    if "/" in name or not nb_path.is_file():
        raise BundleError(f"bundle has no notebook {name!r}")
    if name in VARIANT_NAMES or any((app_dir / v).exists() for v in VARIANT_NAMES):
        reserved = ", ".join(VARIANT_NAMES)
        raise BundleError(f"bundle uses a file name reserved by nbapps ({reserved})")
    nb = nbformat.read(str(nb_path), as_version=4)
    params = manifest.get("parameters")
    if params is None:
        from ..contract import apply_constraints, read_parameters_cell

        cells = [c for c in nb.cells
                 if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
        found = read_parameters_cell(cells[0].source)[0] if cells else []
        constraints = (nb.metadata.get("nbapps", {}) or {}).get("parameters", {}) or {}
        found, _ = apply_constraints(found, constraints)
        params = [p.to_dict() for p in found]
    return nb, list(params), name


class Runner:
    """A standalone Voilà process for one :class:`AppRelease`; ``start`` then ``stop``."""

    def __init__(
        self,
        release: AppRelease,
        settings: RunnerSettings,
        runtime_root: Path,
        share_dir: Path,
        *,
        fontawesome: bool = True,
        cgroups: limits.CgroupSupport | None = None,
        memory_budget: int = 0,
        kernel_cap: int = 40,
    ) -> None:
        self.release = release
        self.settings = settings
        self.share_dir = share_dir
        self.fontawesome = fontawesome
        stamp = f"{int(time.time())}-{os.getpid()}-{next(_ids)}"
        self.id = f"{release.slug}-{release.version[:12]}-{stamp}"
        self.runtime_root = runtime_root
        self.dir = runtime_root / "runners" / self.id
        self.app_dir = self.dir / "app"
        self.conn_dir = self.dir / "conn"
        self.config_dir = self.dir / "config"
        self.status_path = self.dir / "status.json"
        # outside the runner folder, so it survives the runner (crash diagnosis)
        self.log_path = runtime_root / "logs" / f"{self.id}.log"
        self.port = 0
        self.token = secrets.token_urlsafe(32)
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = RunnerState.STARTING
        self.info: AppInfo | None = None
        self.started_at = 0.0
        #: when Voilà first answered over HTTP, and when the runner was ready (monotonic)
        self.http_at = 0.0
        self.ready_at = 0.0
        self.last_used = time.monotonic()
        self.active_requests = 0
        self.open_websockets = 0
        #: when a page without a viewer (a public app) was last admitted (see busy)
        self.last_anonymous_page = 0.0
        self.admissions: list[float] = []  # wall-clock times of pages admitted (see in_use)
        #: page renders in flight (the proxy queues the others, see RunnerSettings.renders)
        self.render_slots = asyncio.Semaphore(settings.renders())
        self.queued_renders = 0
        #: the kernels each viewer holds (the per-viewer bound, nbapps.runner.viewer_pages)
        self.pages = ViewerPages(settings.unconnected_cull_timeout)
        self._admissions = Admissions(self, self.render_slots, settings.max_queued_renders,
                                      self.pages)
        self.stats = RunnerStats()
        self.health_failures = 0
        #: the runner's cgroup (None: the machine gives none; rlimits only)
        self.cgroup = cgroups.runner_paths(runtime_root, self.id) if cgroups else None
        self.memory_budget = memory_budget
        self.kernel_cap = kernel_cap
        self.template_imports: list[str] = []

    # -- identity ----------------------------------------------------------------------------
    @property
    def slug(self) -> str:
        return self.release.slug

    @property
    def base_path(self) -> str:
        return self.settings.app_base_url(self.slug)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def url(self, path: str, query: str = "") -> str:
        """The runner URL of ``path`` (relative to ``/apps/<slug>/``)."""
        q = f"?{query}" if query else ""
        return f"http://127.0.0.1:{self.port}{self.base_path}{path}{q}"

    def ws_url(self, path: str, query: str = "") -> str:
        return "ws" + self.url(path, query)[4:]

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- admission leases (the proxy's way in; nbapps.runner.admission) ----------------------
    def hold(self, kind: Literal["request", "socket"], viewer: str | None = None,
             kernel: str = "") -> Lease:
        """A lease counting a request in flight or a connected page (of ``viewer``, on
        ``kernel``) until released."""
        return self._admissions.hold(kind, viewer, kernel)

    async def render_slot(self) -> Lease:
        """A lease on one of the runner's page renders (waits in its queue; RunnerBusy)."""
        return await self._admissions.render_slot()

    def busy(self) -> bool:
        """Whether viewers still use this runner: requests in flight, pages connected, or
        pages served that have not connected yet. The last matter at a version switch: a page
        rendered just before it opens its kernel socket seconds later (the front end loads
        first), and a draining runner stopped meanwhile leaves that page without widgets."""
        return (self.active_requests > 0 or self.open_websockets > 0
                or self.pages.unconnected() > 0
                or time.monotonic() - self.last_anonymous_page < ANONYMOUS_PAGE_GRACE)

    def owns_kernel(self, kernel_id: str) -> bool:
        """Whether the kernel ``kernel_id`` runs in this runner (its connection file is ours)."""
        if not KERNEL_ID.match(kernel_id):
            return False
        return any(self.conn_dir.glob(f"voila_*/kernel-{kernel_id}.json"))

    def variant_path(self, custom: bool) -> str:
        return f"voila/render/{CUSTOM_NAME if custom else DEFAULT_NAME}"

    def record(self) -> dict[str, Any]:
        """What the orphan reaper needs to find this runner's processes after a crash."""
        create_time = 0.0
        if self.pid:
            with contextlib.suppress(psutil.Error):
                create_time = psutil.Process(self.pid).create_time()
        return {"id": self.id, "slug": self.slug, "version": self.release.version,
                "pid": self.pid, "create_time": create_time, "dir": str(self.dir),
                "port": self.port}

    # -- preparing ---------------------------------------------------------------------------
    def prepare(self) -> AppInfo:
        """Copy the bundle read-only, write the served variants (blocking: run in a thread)."""
        src = self.release.bundle_dir
        if not src.is_dir():
            raise RunnerError(f"bundle folder {src} not found")
        remove_tree(self.dir)
        for d in (self.conn_dir, self.config_dir, self.dir / "jupyter" / "runtime",
                  self.dir / "jupyter" / "data"):
            d.mkdir(parents=True, exist_ok=True)
        _copy_read_only(src, self.app_dir)
        nb, params, _name = read_app(self.app_dir)
        variants = build_variants(nb, params)
        self.template_imports = list(variants.template_imports)
        nbformat.write(variants.default, str(self.app_dir / DEFAULT_NAME))
        if variants.custom is not None:
            nbformat.write(variants.custom, str(self.app_dir / CUSTOM_NAME))
        make_read_only(self.app_dir)
        meta = nb.metadata.get("nbapps", {}) or {}
        timeout = meta.get("timeout")
        cell_timeout = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
        self.info = AppInfo(
            contract=ParameterContract.from_dict(params),
            has_custom=variants.custom is not None,
            has_widget_cells=variants.has_widget_cells,
            cell_timeout=cell_timeout,
            title=str(meta.get("title") or self.slug),
        )
        return self.info

    def kernel_setup(self, python: str) -> KernelSetup:
        return kernel_setup(
            self.settings, runner_dir=self.dir, app_dir=self.app_dir, python=python,
            cgroup=self.cgroup, memory_budget=self.memory_budget, kernel_cap=self.kernel_cap,
            template_imports=self.template_imports, sandboxed=self._sandboxed())

    def _write_config(self, setup: KernelSetup) -> Path:
        assert self.info is not None
        text = voila_config(
            self.settings, slug=self.slug, port=self.port, token=self.token,
            root_dir=self.app_dir, connection_dir=self.conn_dir, status_path=self.status_path,
            cell_timeout=self.info.cell_timeout, has_custom=self.info.has_custom,
            fontawesome=self.fontawesome, extra=[*setup.voila, *self.voila_extra()],
        )
        path = self.config_dir / "voila.py"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def voila_extra(self) -> list[tuple[str, Any]]:
        """More settings for the runner's Voilà configuration (a subclass's; none here)."""
        return []

    # -- starting / stopping -----------------------------------------------------------------
    def spawn(self) -> None:
        """Start the Voilà process (after :meth:`prepare`)."""
        cmd, env = self.launch_command()
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                cmd, cwd=str(self.dir), env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.started_at = time.monotonic()
        log.info("runner %s: started voila pid %s on port %s", self.id, self.proc.pid, self.port)

    def launch_command(self) -> tuple[list[str], dict[str, str]]:
        """Pick the port, write the configuration and return the runner's (argv, environment)
        to run in the runner folder (a local child here, a Hub server in :mod:`.hub_runner`)."""
        self.port = free_port()
        python = self.settings.python or sys.executable
        setup = self.kernel_setup(python)
        self._write_config(setup)
        env = runner_environment(
            jupyter_path=str(self.share_dir), config_dir=str(self.config_dir),
            runtime_dir=str(self.dir / "jupyter" / "runtime"),
            data_dir=str(self.dir / "jupyter" / "data"),
            extra_names=self.settings.extra_env_names, extra_env=self.settings.extra_env,
        )
        # a home and a temp folder of the runner's own: the sandbox lets app code write only
        # there (matplotlib's caches, tempfile), with or without the sandbox the same way
        for name, folder in (("HOME", self.dir / "home"), ("TMPDIR", self.dir / "tmp")):
            folder.mkdir(parents=True, exist_ok=True)
            env[name] = str(folder)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        launch = [python, "-m", "nbapps.runner.launch", "--runner-dir", str(self.dir)]
        if setup.template is not None:
            setup.template.dump(self.dir / "template.json")
            launch += ["--template", str(self.dir / "template.json")]
        (self.dir / "limits.json").write_text(setup.launch.to_json(), encoding="utf-8")
        env[limits.ENV_VAR] = str(self.dir / "limits.json")
        cmd = self._confined([*launch, "--", python, "-m", "voila", "--no-browser",
                              f"--Voila.config_file_paths={[str(self.config_dir)]!r}"], python,
                             write=setup.write)
        return cmd, env

    def _sandboxed(self) -> bool:
        return self.settings.sandbox and sandbox.available()

    def _confined(self, argv: list[str], python: str, write: Sequence[str] = ()) -> list[str]:
        """``argv`` in the Landlock sandbox (unless turned off or not available here)."""
        if not self.settings.sandbox:
            return argv
        if not sandbox.available():
            _warn_no_sandbox()
            return argv
        return sandbox.command(
            argv, read=[self.share_dir], write=[self.dir, *write], python=python,
            protect=[self.runtime_root, *self.settings.protected_paths])

    def read_status(self) -> dict[str, Any]:
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def pools_ready(self, rendered: bool = False, *, each: int | None = None) -> bool:
        """Whether every configured pool has its kernels started (or warm: ``rendered``).

        Warm means the default variant's pages are fully rendered and the custom variant's
        kernels wait for their request. ``each``: at least that many per pool is enough (a
        runner serves once every pool has one kernel; the rest fill in while it serves).
        """
        assert self.info is not None
        want = {DEFAULT_NAME: max(self.settings.pool_size, 0)}
        if self.info.has_custom:
            want[CUSTOM_NAME] = max(self.settings.custom_pool_size, 0)
        if each is not None:
            want = {name: min(size, each) for name, size in want.items()}
        pools = self.read_status().get("pools", {})
        for name, size in want.items():
            have = pools.get(name, {})
            if have.get("started", 0) < size:
                return False
            if rendered:
                done = have.get("rendered" if name == DEFAULT_NAME else "waiting", 0)
                if done < size:
                    return False
        return True

    async def check_health(self, timeout: float = 5.0) -> bool:
        """One HTTP request to the runner's static health file."""
        if not self.alive():
            return False
        client = AsyncHTTPClient()
        try:
            resp = await fetch(client, HTTPRequest(self.url(HEALTH_PATH),
                                                   connect_timeout=timeout,
                                                   request_timeout=timeout), raise_error=False)
        except (OSError, HTTPClientError, asyncio.TimeoutError):
            return False
        return resp.code == 200

    async def wait_ready(self, *, rendered: bool = False, timeout: float | None = None) -> None:
        """Wait until Voilà answers and each pool has a kernel started (or rendered, for a
        switch): the first viewer's page waits for its own kernel, not for the whole pool."""
        limit = timeout if timeout is not None else self.settings.startup_timeout
        deadline = time.monotonic() + limit
        http_ok = False
        while time.monotonic() < deadline:
            if not self.alive():
                raise RunnerError(f"app runner for '{self.slug}' exited during start "
                                  f"(status {self.proc.returncode if self.proc else '?'}); "
                                  f"see {self.log_path}", code="NBA401")
            if not http_ok:
                http_ok = await self.check_health(timeout=2.0)
                if http_ok:
                    self.http_at = time.monotonic()
                    # Voilà has read its configuration: the token no longer needs to be on disk.
                    (self.config_dir / "voila.py").unlink(missing_ok=True)
            if http_ok and self.pools_ready(rendered=rendered, each=1):
                self.state = RunnerState.READY
                self.ready_at = time.monotonic()
                log.info("runner %s ready in %.2fs (Voilà answered after %.2fs)", self.id,
                         self.ready_at - self.started_at, (self.http_at or 0) - self.started_at)
                return
            await asyncio.sleep(0.05)
        raise RunnerError(f"app runner for '{self.slug}' not ready after {limit:.0f}s; "
                          f"see {self.log_path}", code="NBA401")

    async def start(self, *, rendered: bool = False) -> None:
        """Prepare, spawn and wait until ready; on failure the process is stopped."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.prepare)
            self.spawn()
            await self.wait_ready(rendered=rendered)
        except BaseException:
            self.state = RunnerState.FAILED
            await self.stop(remove=False)
            raise

    def processes(self) -> list[psutil.Process]:
        """Every live process of this runner: Voilà, its kernels, and strays that name our dir."""
        procs: dict[int, psutil.Process] = {}
        if self.pid:
            try:
                root = psutil.Process(self.pid)
                procs[root.pid] = root
                for child in root.children(recursive=True):
                    procs[child.pid] = child
            except psutil.Error:
                pass
        for p in find_processes_mentioning(str(self.dir)):
            procs.setdefault(p.pid, p)
        if self.cgroup is not None:
            for pid in limits.cgroup_pids(self.cgroup.dirs()):
                with contextlib.suppress(psutil.Error):
                    procs.setdefault(pid, psutil.Process(pid))
        return list(procs.values())

    async def stop(self, *, remove: bool = True) -> None:
        """SIGTERM the process group (Voilà shuts its kernels down), SIGKILL what remains."""
        self.state = RunnerState.STOPPED if self.state != RunnerState.FAILED else self.state
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._stop_blocking, remove)

    def _stop_blocking(self, remove: bool) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.settings.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("runner %s ignored SIGTERM; killing it", self.id)
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        kill_processes(self.processes())
        if self.cgroup is not None:
            limits.release_cgroup(self.cgroup.dirs())
        if remove:
            remove_tree(self.dir)
        log.info("runner %s stopped", self.id)

    # -- sampling ----------------------------------------------------------------------------
    def memory(self) -> dict[str, int]:
        """RSS, PSS and process count of the runner's process tree (blocking)."""
        if self.alive() and self.pid:
            return tree_memory(self.pid)
        return {"rss": 0, "pss": 0, "processes": 0}

    def sample(self) -> RunnerStats:
        """Memory and kernels of this runner (blocking, a few ms: run in a thread)."""
        tree = self.memory()
        rss, memory, procs = tree["rss"], tree["pss"], tree["processes"]
        kernels = max(procs - 1, 0)
        status = self.read_status()
        self.stats = RunnerStats(
            rss=rss, memory=memory, processes=procs, kernels=int(status.get("kernels", kernels)),
            in_use=int(status.get("in_use", 0)), pools=dict(status.get("pools", {})),
            client_classes=list(status.get("client_classes", [])),
            time=float(status.get("time", 0.0)),
        )
        return self.stats

    def admit(self, viewer: str | None = None) -> int:
        """Count a page request sent to this runner until its status file reflects it (and
        for its viewer, until its kernel ends: :class:`ViewerPages`). Returns the page's
        handle among the viewer's pages (0: no viewer)."""
        now = time.time()
        self.admissions = [t for t in self.admissions if t > now - 30] + [now]
        self.last_used = time.monotonic()
        if viewer:
            return self.pages.admit(viewer)
        self.last_anonymous_page = time.monotonic()
        return 0

    def in_use(self) -> int:
        """Kernels used by pages: the runner's last status plus admissions made after it."""
        return self.stats.in_use + sum(1 for t in self.admissions if t > self.stats.time)


def find_processes_mentioning(text: str) -> list[psutil.Process]:
    """Processes of this user whose command line contains ``text`` (a runner folder path)."""
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = p.info.get("cmdline") or []
        except psutil.Error:
            continue
        if p.pid != me and any(text in part for part in cmd):
            found.append(p)
    return found
