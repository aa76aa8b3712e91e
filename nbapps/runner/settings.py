"""The app runtime's one configuration object (Voilà's ``VoilaConfiguration`` is the model).

Every setting of the runners (standalone Voilà processes), their kernels and OS bounds, and
the supervisor is a trait of :class:`RuntimeConfiguration`, set like any Jupyter setting in
``jupyter_nbapps_config.py``::

    c.RuntimeConfiguration.pool_size = 4
    c.RuntimeConfiguration.kernel_memory_limit = 4 * 1024**3
    c.RuntimeConfiguration.max_kernels_per_app = 80

or on the command line (``nbapps serve --set RuntimeConfiguration.pool_size=4``); ``nbapps serve
--help-all`` lists them. The gallery (:class:`nbapps.server.app.NbappsServer`) makes one with
itself as parent and turns it into the runtime's internal values
(:class:`~nbapps.runner.config.RunnerSettings`, :class:`~nbapps.runner.supervisor.
SupervisorSettings`), adding what only the gallery knows (its runtime folder, URL prefix, data
dir). Sizes are in bytes, times in seconds; 0 means "none" or "automatic" as each help says.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from traitlets import Bool, CaselessStrEnum, Dict, Float, Integer, List, Unicode, default
from traitlets.config import Configurable

from .config import RunnerSettings
from .hub_runner import HubRunnerSettings
from .supervisor import SupervisorSettings

MIB = 1024 * 1024
GIB = 1024 * MIB

#: traits that become RunnerSettings fields (same names)
RUNNER_FIELDS = (
    "pool_size", "custom_pool_size", "fill_delay", "max_concurrent_preheats",
    "max_concurrent_renders", "max_queued_renders", "cell_timeout", "cull_idle_timeout",
    "cull_interval", "cull_connected", "unconnected_cull_timeout", "http_keep_alive_timeout",
    "max_message_size", "theme", "startup_timeout", "stop_timeout", "python", "sandbox",
    "fork_kernels", "fork_timeout", "kernel_memory_limit", "kernel_max_processes",
    "runner_memory_limit", "runner_max_processes", "shm_size",
)
#: traits that become SupervisorSettings fields (same names)
SUPERVISOR_FIELDS = (
    "idle_timeout", "sample_interval", "health_interval", "health_failures",
    "max_kernels_per_app", "max_kernels_per_viewer", "queue_patience", "memory_budget",
    "kernel_memory_estimate", "drain_timeout", "retry_after", "start_wait", "log_days",
    "cgroups", "cgroup_parent",
)


class RuntimeConfiguration(Configurable):
    """Settings of the app runtime: runners, kernels, OS bounds, supervisor."""

    # -- preheated kernels and rendering --------------------------------------------------------
    pool_size = Integer(
        2, config=True,
        help="Preheated kernels per app for default-parameter pages (each holds a fully "
             "rendered page).")
    custom_pool_size = Integer(
        1, config=True,
        help="Preheated kernels per app for custom-parameter pages (they have run the cells "
             "above the parameters cell and wait for a request).")
    fill_delay = Float(
        1.0, config=True, help="Seconds before a used pool kernel is replaced.")
    max_concurrent_preheats = Integer(
        0, config=True,
        help="Pool kernels starting or pre-running at the same time per app (0: the number of "
             "CPUs). The first kernel of each pool never waits, and the others wait for it: a "
             "cold start serves its first viewer once each pool has one kernel.")
    max_concurrent_renders = Integer(
        0, config=True,
        help="Page requests a runner renders at the same time; more wait in the queue "
             "(0: 4 x CPUs + 2).")
    max_queued_renders = Integer(
        200, config=True,
        help="Page requests that may wait in a runner's queue before viewers get the busy page "
             "(the queue length).")
    cell_timeout = Float(
        60.0, config=True,
        help="Seconds an app cell may run before it is interrupted and the page ends with an "
             "error (an app's metadata.nbapps.timeout wins).")
    http_keep_alive_timeout = Integer(
        10, config=True, help="Seconds between keep-alive chunks while a page renders.")
    max_message_size = Integer(
        1 * MIB, config=True,
        help="Largest WebSocket message from a viewer's page to a kernel (bytes): widget "
             "state, uploaded files. Larger messages close the connection.")
    theme = Unicode("light", config=True, help="Voilà theme of app pages (light or dark).")

    # -- kernels ----------------------------------------------------------------------------------
    fork_kernels = Bool(
        True, config=True,
        help="Fork kernels from a warm template process per runner (ipykernel and the app's "
             "leading imports loaded once) instead of starting each one; kernels are spawned "
             "when this is off or forking is not possible.")
    fork_timeout = Float(
        60.0, config=True,
        help="Seconds a kernel start waits for the template (still importing) before the "
             "kernel is spawned instead.")
    cull_idle_timeout = Integer(
        600, config=True,
        help="Seconds after which an idle kernel is shut down, connected page or not (0: never).")
    cull_interval = Integer(30, config=True, help="Seconds between idle-kernel checks.")
    cull_connected = Bool(
        True, config=True, help="Cull idle kernels even when their page is still connected.")
    unconnected_cull_timeout = Integer(
        45, config=True,
        help="Seconds after which a kernel whose page never connected (a script, a crawler, a "
             "page closed at once) is shut down (0: never; at most 60 is advised).")

    # -- OS bounds ------------------------------------------------------------------------------
    kernel_memory_limit = Integer(
        2 * GIB, config=True,
        help="Memory one kernel may hold (bytes; cgroup memory limit, and RLIMIT_AS with 1 GiB "
             "more address space); 0: none.")
    kernel_max_processes = Integer(
        128, config=True,
        help="Processes and threads one kernel may have (cgroup pids limit; an approximate "
             "RLIMIT_NPROC without cgroups when not running as root); 0: none.")
    runner_memory_limit = Integer(
        0, config=True,
        help="Memory of one runner, all its kernels included (bytes; cgroup); 0: memory_budget.")
    runner_max_processes = Integer(
        0, config=True,
        help="Processes and threads of one runner (cgroup); 0: kernel_max_processes x "
             "(max_kernels_per_app + pool sizes) + 256.")
    shm_size = Integer(
        64 * MIB, config=True,
        help="Size of each runner's private /dev/shm (bytes; needs CAP_SYS_ADMIN, else the "
             "shared one counts against the runner's memory cgroup); 0: keep the shared one.")
    cgroups = Bool(
        True, config=True,
        help="Give every runner and kernel its own cgroup when the machine allows it (cgroup "
             "v2 with memory and pids delegated, or writable v1 hierarchies).")
    cgroup_parent = Unicode(
        "", config=True,
        help="A cgroup v2 folder delegated to the gallery (memory and pids in its "
             "cgroup.subtree_control); empty: the gallery's own cgroup.")
    sandbox = Bool(
        True, config=True,
        help="Confine runners and their kernels with Linux Landlock, so app code cannot read "
             "the gallery's data dir (and cannot raise its own limits). Without Landlock "
             "runners start unconfined and a warning is logged.")

    # -- supervisor ------------------------------------------------------------------------------
    max_kernels_per_app = Integer(
        40, config=True,
        help="Kernels in use by pages (pooled kernels not counted) per app before new viewers "
             "wait in the app's queue (a page with their place, which opens the app by itself).")
    max_kernels_per_viewer = Integer(
        3, config=True,
        help="Kernels one viewer (an account; anonymous viewers are not told apart) may hold "
             "in one app; further pages wait until one of theirs closes or is culled (0: no "
             "bound).")
    queue_patience = Float(
        10.0, config=True,
        help="Seconds a queued viewer keeps their place without their waiting page asking "
             "again (it asks every retry_after seconds; a closed page gives its place up).")
    memory_budget = Integer(
        0, config=True,
        help="Total memory of all runners and kernels (bytes) before viewers get the busy page "
             "and idle runners are stopped to make room; 0: half of the physical memory.")
    kernel_memory_estimate = Integer(
        160 * MIB, config=True,
        help="Memory one more kernel is assumed to need when checking the budget (bytes).")
    idle_timeout = Float(
        1800.0, config=True,
        help="Seconds without requests or connected pages after which a runner is stopped.")
    start_wait = Float(
        0.0, config=True,
        help="Seconds a page request waits for a starting runner before the starting page.")
    drain_timeout = Float(
        3600.0, config=True,
        help="Seconds an old version's runner keeps serving connected pages after a switch.")
    sample_interval = Float(
        1.0, config=True, help="Seconds between samples of the runners (memory, crashes).")
    health_interval = Float(5.0, config=True, help="Seconds between runner health checks.")
    health_failures = Integer(
        3, config=True, help="Failed health checks in a row that count as a crash.")
    restart_backoff = List(
        Float(), [1.0, 2.0, 5.0, 10.0, 30.0, 60.0], config=True,
        help="Seconds before restart attempt n of a crashed runner (the last value repeats).")
    retry_after = Integer(
        2, config=True, help="Retry-After (seconds) of the starting and busy pages.")
    startup_timeout = Float(
        60.0, config=True, help="Seconds a runner may take to start serving.")
    stop_timeout = Float(
        10.0, config=True, help="Seconds between SIGTERM and SIGKILL when stopping a runner.")
    log_days = Float(
        7.0, config=True, help="Runner logs older than this many days are deleted at start.")
    python = Unicode(
        "", config=True,
        help="The Python that runs the runners (Voilà and ipykernel installed); empty: the "
             "gallery's.")
    extra_env_names = List(
        Unicode(), config=True,
        help="Environment variables passed from the gallery to app kernels, beyond the "
             "allowlist (PATH, LANG, TZ, ...).")
    extra_env = Dict(
        key_trait=Unicode(), value_trait=Unicode(), config=True,
        help="Fixed environment variables for app kernels.")

    # -- where runners run ---------------------------------------------------------------------
    backend = CaselessStrEnum(
        ["local", "jupyterhub"], "local", config=True,
        help="local: runners are child processes of the gallery. jupyterhub: each runner is a "
             "named server of hub_account, started and stopped through the Hub's REST API "
             "(see hub_runner_files and docs/deploy.md).")
    hub_api_url = Unicode(
        config=True, help="The Hub's REST API for the jupyterhub backend (default: "
                          "HubConfiguration.api_url when set, else $JUPYTERHUB_API_URL).")
    hub_api_token = Unicode(
        config=True, help="A Hub token with servers!user=<hub_account> for the jupyterhub "
                          "backend (default: HubConfiguration.api_token when set, else "
                          "$JUPYTERHUB_API_TOKEN).")
    hub_account = Unicode(
        "", config=True, help="The Hub user whose named servers the runners are.")
    hub_spawn_timeout = Float(
        120.0, config=True, help="Seconds the Hub may take to report a runner server ready.")
    hub_runner_files = CaselessStrEnum(
        ["shared", "fetch"], "shared", config=True,
        help="How a runner the Hub starts gets its folder. shared: the spawned server sees the "
             "gallery's runtime folder (LocalProcessSpawner, SystemdSpawner: one machine). "
             "fetch: it runs elsewhere (KubeSpawner, DockerSpawner) from the gallery's image, "
             "fetches its folder from the gallery with a one-time secret, reports its status "
             "over HTTP and is reached at the address it reports (the Hub hook needs "
             "gallery_url; docs/deploy.md).")

    @default("hub_api_url")
    def _hub_api_url(self) -> str:
        return self._hub_login_value("api_url", "JUPYTERHUB_API_URL")

    @default("hub_api_token")
    def _hub_api_token(self) -> str:
        return self._hub_login_value("api_token", "JUPYTERHUB_API_TOKEN")

    def _hub_login_value(self, name: str, env: str) -> str:
        """What the gallery's Hub login is configured with (``HubConfiguration.<name>``), so a
        Hub is named once; else the variable the Hub sets for its services."""
        login = self.config.get("HubConfiguration") or {}
        return str(login.get(name) or os.environ.get(env, ""))

    def hub_settings(self) -> HubRunnerSettings | None:
        """The jupyterhub backend's settings; None for local runners."""
        if self.backend != "jupyterhub":
            return None
        return HubRunnerSettings(api_url=self.hub_api_url, api_token=self.hub_api_token,
                                 account=self.hub_account, spawn_timeout=self.hub_spawn_timeout,
                                 files=self.hub_runner_files)

    def runner_settings(self, **fixed: Any) -> RunnerSettings:
        """The runners' internal settings; ``fixed``: what the gallery decides (url_prefix...)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in RUNNER_FIELDS}
        values["extra_env_names"] = tuple(self.extra_env_names)
        values["extra_env"] = dict(self.extra_env)
        values.update(fixed)
        return RunnerSettings(**values)

    def supervisor_settings(self, runtime_dir: Path, **fixed: Any) -> SupervisorSettings:
        """The supervisor's internal settings, its runners' included."""
        runner = fixed.pop("runner", None) or self.runner_settings()
        values: dict[str, Any] = {name: getattr(self, name) for name in SUPERVISOR_FIELDS}
        values["restart_backoff"] = tuple(float(x) for x in self.restart_backoff) or (1.0,)
        values["hub"] = self.hub_settings()
        values.update(fixed)
        return SupervisorSettings(runtime_dir=Path(runtime_dir), runner=runner, **values)
