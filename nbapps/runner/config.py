"""The Voilà configuration nbapps generates for a runner, and the template folder it uses.

Everything a runner needs is in one ``voila.py`` written into the runner's private config folder
(``Voila.config_file_paths`` points there only, so no user or system Jupyter config changes how
an app is served). The file holds the runner's token; the runner process deletes nothing, so
:class:`~nbapps.runner.process.Runner` removes the file once Voilà has read it.

Safe settings, with the pitfall each one answers (DESIGN.md, "Known pitfalls"):

- standalone Voilà on 127.0.0.1, a random port and token, ``base_url=<url_prefix><slug>/``;
- ``strip_sources``, ``show_tracebacks=False``, template and theme overrides refused
  (``allow_template_override=NO``: ``?template=nonexistent`` hung the response);
- the ``nbapps`` template (hidden cells, Font Awesome served locally instead of a CDN);
- preheated kernels per served variant (:mod:`.notebook_variants`), refilled without delay;
- the kernel classes of :mod:`nbapps.kernel` (sliced polling: no missed wake-up);
- a per-cell execution timeout (the wait-for-request cell excepted), interrupting the cell;
- idle kernel culling, including kernels whose page is still connected.
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .notebook_variants import CUSTOM_NAME, DEFAULT_NAME

TEMPLATE_NAME = "nbapps"
#: Where our Voilà template lives in the package (a Jupyter data dir layout).
PACKAGE_SHARE = Path(__file__).with_name("share")
#: Files Voilà's ``/voila/files/`` may serve from an app folder: images only, never code/data.
FILE_ALLOWLIST = [r".*\.(png|jpg|jpeg|gif|svg)"]
FILE_DENYLIST = [r".*\.(ipynb|py|json)", r"(.*/)?\..*"]
#: JupyterLab extensions an app page never needs (editing, diffing, publishing, Voilà's lab
#: preview): Voilà loads every installed one otherwise (more requests, console errors)
LAB_ONLY_EXTENSIONS = ["@nbapps/jupyterlab", "nbdime-jupyterlab",
                       "@voila-dashboards/jupyterlab-preview"]


@dataclass(frozen=True)
class RunnerSettings:
    """How runners serve apps (one value for every runner of a supervisor)."""

    #: preheated kernels for default-parameter pages (each holds a fully executed page)
    pool_size: int = 2
    #: preheated kernels for custom-parameter pages (run up to the parameters cell, then wait)
    custom_pool_size: int = 1
    #: seconds before a used pool kernel is replaced (the refill's set-up work runs on Voilà's
    #: event loop, so starting it at once would slow down the page being served)
    fill_delay: float = 1.0
    #: pool kernels starting or pre-running at the same time (0: the number of CPUs)
    max_concurrent_preheats: int = 0
    #: page requests a runner renders at the same time; more wait in the proxy's queue, so a
    #: burst that empties the pool does not start dozens of kernels at once (0: 4 x CPUs + 2;
    #: a page also waits for its kernel's start and messages, so with 2 x CPUs + 2 the cores
    #: idled in a rush: 50 new viewers of a tiny app, p95 1.93-2.02 s with 6, 1.73-1.86 s
    #: with 10 on 2 cores; a pandas app's 4.6 s either way)
    max_concurrent_renders: int = 0
    #: page requests that may wait in that queue before viewers get the busy page
    max_queued_renders: int = 200

    def preheats(self) -> int:
        return self.max_concurrent_preheats or max(os.cpu_count() or 2, 2)

    def renders(self) -> int:
        return self.max_concurrent_renders or 4 * (os.cpu_count() or 2) + 2
    #: seconds a cell may run before it is interrupted and the page ends with an error
    cell_timeout: float = 60.0
    #: kernels idle this long are shut down (0: never); connected pages count as idle too
    cull_idle_timeout: int = 600
    cull_interval: int = 30
    cull_connected: bool = True
    #: seconds between Voilà's heartbeat chunks while a cell runs
    http_keep_alive_timeout: int = 10
    #: largest WebSocket message from a page (widget state, images) in bytes
    max_message_size: int = 1024 * 1024
    theme: str = "light"
    #: URL path the apps live under (the gallery's ``<base_url>apps/``); each runner is a Voilà
    #: with ``base_url=<url_prefix><slug>/``, so the URLs its front end builds go through the
    #: gallery's proxy even when a proxy in front adds a prefix
    url_prefix: str = "/apps/"

    def app_base_url(self, slug: str) -> str:
        return f"{self.url_prefix}{slug}/"
    #: extra environment variable names passed to kernels (on top of :mod:`.env`'s allowlist)
    extra_env_names: tuple[str, ...] = ()
    #: fixed environment values for kernels
    extra_env: dict[str, str] = field(default_factory=dict)
    #: seconds Voilà may take to start listening
    startup_timeout: float = 60.0
    #: seconds between SIGTERM and SIGKILL when stopping a runner
    stop_timeout: float = 10.0
    #: the Python that runs ``python -m voila``
    python: str = ""
    #: confine each runner and its kernels with Landlock (Linux): app code reads only the
    #: system, the Python installation and the runner's own folder (:mod:`nbapps.sandbox`)
    sandbox: bool = True
    #: folders app code must never read (the gallery's data dir); the runtime dir always is
    protected_paths: tuple[str, ...] = ()
    # -- kernels and OS bounds (nbapps.runner.provisioner, nbapps.limits) --
    #: fork kernels from a warm template process instead of starting each one
    fork_kernels: bool = True
    #: seconds a kernel start waits for the template before it is spawned instead
    fork_timeout: float = 60.0
    #: memory one kernel may hold (bytes, 0: none); its address space gets 1 GiB more
    kernel_memory_limit: int = 2 * 1024 ** 3
    #: processes and threads of one kernel (0: none)
    kernel_max_processes: int = 128
    #: memory of a whole runner (0: the supervisor's memory budget)
    runner_memory_limit: int = 0
    #: processes and threads of a whole runner (0: enough for its kernel cap and pools)
    runner_max_processes: int = 0
    #: size of a runner's private /dev/shm (0: the machine's, shared)
    shm_size: int = 64 * 1024 * 1024
    #: seconds before a kernel whose page never connected is shut down (0: never)
    unconnected_cull_timeout: int = 45


def fontawesome_dir() -> Path | None:
    """Font Awesome 5 (css + webfonts) from the ``fontawesome-free`` package, if installed."""
    try:
        dist = importlib.metadata.distribution("fontawesome-free")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("fontawesome-free/static/fontawesome_free")))
    if (path / "css" / "all.min.css").is_file() and (path / "webfonts").is_dir():
        return path
    return None


def prepare_share(root: Path) -> tuple[Path, bool]:
    """A Jupyter data dir under ``root`` with the nbapps Voilà template; (path, has Font Awesome).

    The template and Font Awesome's ``css`` and ``webfonts`` are copied (tornado's static file
    handler refuses symlinks that leave the served folder) into the template's ``static`` folder
    so the runner serves them itself.
    """
    share = root / "share"
    template = share / "voila" / "templates" / TEMPLATE_NAME
    static = template / "static"
    static.mkdir(parents=True, exist_ok=True)
    source = PACKAGE_SHARE / "voila" / "templates" / TEMPLATE_NAME
    for item in source.iterdir():
        if item.is_file():
            _copy_if_changed(item, template / item.name)
    health = static / "health.txt"
    if not health.exists():
        health.write_text("ok\n", encoding="utf-8")
    fa = fontawesome_dir()
    if fa is not None:
        for css in ("all.min.css", "v4-shims.min.css"):
            _copy_if_changed(fa / "css" / css, static / "fontawesome" / "css" / css)
        for font in (fa / "webfonts").iterdir():
            if font.is_file():
                _copy_if_changed(font, static / "fontawesome" / "webfonts" / font.name)
    return share, fa is not None


def _copy_if_changed(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically unless an identical-looking copy is there."""
    st = src.stat()
    if dest.is_file() and not dest.is_symlink():
        dt = dest.stat()
        if dt.st_size == st.st_size and dt.st_mtime >= st.st_mtime:
            return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def voila_config(
    settings: RunnerSettings,
    *,
    slug: str,
    port: int,
    token: str,
    root_dir: Path,
    connection_dir: Path,
    status_path: Path,
    cell_timeout: float | None = None,
    has_custom: bool = True,
    fontawesome: bool = True,
    extra: list[tuple[str, Any]] | None = None,
) -> str:
    """The text of the runner's ``voila.py``."""
    base_url = settings.app_base_url(slug)
    timeout = settings.cell_timeout if cell_timeout is None else cell_timeout
    pools = {
        "default": {"pool_size": 0},
        DEFAULT_NAME: {"pool_size": max(settings.pool_size, 0)},
        CUSTOM_NAME: {"pool_size": max(settings.custom_pool_size, 0) if has_custom else 0},
    }
    served = "|".join(n.replace(".", r"\.") for n in (DEFAULT_NAME, CUSTOM_NAME))
    values: list[tuple[str, Any]] = [
        ("Voila.ip", "127.0.0.1"),
        ("Voila.port", port),
        ("Voila.port_retries", 0),
        ("Voila.open_browser", False),
        ("Voila.base_url", base_url),
        ("Voila.token", token),
        ("Voila.root_dir", str(root_dir)),
        ("Voila.connection_dir_root", str(connection_dir)),
        ("Voila.tornado_settings", {
            "websocket_max_message_size": settings.max_message_size,
            "websocket_ping_interval": 30,
        }),
        ("VoilaConfiguration.template", TEMPLATE_NAME),
        ("VoilaConfiguration.theme", settings.theme),
        ("VoilaConfiguration.allow_template_override", "NO"),
        ("VoilaConfiguration.allow_theme_override", "NO"),
        ("VoilaConfiguration.strip_sources", True),
        ("VoilaConfiguration.show_tracebacks", False),
        ("VoilaConfiguration.preheat_kernel", True),
        ("VoilaConfiguration.default_pool_size", 0),
        ("VoilaConfiguration.progressive_rendering", False),
        ("VoilaConfiguration.http_keep_alive_timeout", settings.http_keep_alive_timeout),
        ("VoilaConfiguration.file_allowlist", FILE_ALLOWLIST),
        ("VoilaConfiguration.file_denylist", FILE_DENYLIST),
        ("VoilaConfiguration.extension_denylist", LAB_ONLY_EXTENSIONS),
        ("VoilaConfiguration.http_header_envs", []),
        ("VoilaConfiguration.multi_kernel_manager_class",
         "nbapps.runner.voila_hooks.RunnerKernelManager"),
        ("VoilaConfiguration.resources", {"nbapps": {"fontawesome": fontawesome}}),
        ("VoilaKernelManager.kernel_pools_config", pools),
        # Voilà filters absolute paths: preheat only our variants, never the bundle's own notebooks
        ("VoilaKernelManager.preheat_denylist", [rf"^(?!(.*/)?({served})$)"]),
        ("VoilaKernelManager.fill_delay", settings.fill_delay),
        ("RunnerKernelManager.kernel_manager_class", "nbapps.kernel.NbappsServerKernelManager"),
        ("RunnerKernelManager.status_path", str(status_path)),
        ("RunnerKernelManager.max_concurrent_preheats", settings.preheats()),
        ("RunnerKernelManager.cull_idle_timeout", settings.cull_idle_timeout),
        ("RunnerKernelManager.cull_interval", settings.cull_interval),
        ("RunnerKernelManager.cull_connected", settings.cull_connected),
        ("RunnerKernelManager.cull_busy", False),
        ("ServerKernelManager.client_class", "nbapps.kernel.NbappsKernelClient"),
        ("VoilaExecutor.timeout", int(timeout) if timeout else None),
        ("VoilaExecutor.interrupt_on_timeout", True),
        ("VoilaExecutor.cell_error_instruction",
         "The app hit an error; its publisher can see the details in the server log."),
        ("VoilaExecutor.cell_timeout_instruction",
         "A step of this app took too long and was stopped."),
    ]
    lines = [
        "# Generated by nbapps for one app runner. Do not edit: it is rewritten at every start.",
        "from nbapps.runner import page_config_cache, page_stream, template_cache",
        "from nbapps.runner.voila_hooks import log_request, make_timeout_func",
        "template_cache.install()",
        "page_config_cache.install()",
        "page_stream.install()",
        "c = get_config()  # noqa: F821",
    ]
    lines += [f"c.{key} = {value!r}" for key, value in [*values, *(extra or [])]]
    lines.append(f"c.VoilaExecutor.timeout_func = make_timeout_func({timeout!r})")
    lines.append('c.Voila.tornado_settings["log_function"] = log_request')
    return "\n".join(lines) + "\n"
