"""App runners as JupyterHub named servers (``RuntimeConfiguration.backend = "jupyterhub"``).

The jhub-apps pattern: each app version runs as a named server of one Hub account (the service
account, ``hub_account``), started and stopped through the Hub's REST API, so the Hub's spawner
decides how it runs and the Hub lists it. A :class:`HubRunner` is a
:class:`~nbapps.runner.process.Runner` (same folder, configuration, command line, token, sandbox
and limits) whose process the Hub starts instead of the gallery:

1. ``prepare`` as for a local runner (read-only bundle copy, notebook variants);
2. the runner's command line and environment (:meth:`Runner.launch_command`) are written to
   ``<runner>/hub-launch.json``;
3. ``POST /hub/api/users/<account>/servers/nba-<sha12>-<random>`` with ``user_options`` naming
   that folder and the port, then the server model is polled until ``ready`` (the Hub's own
   readiness check is an HTTP request to the port);
4. the Hub-side hook (:func:`nbapps.runner.hub_launch.pre_spawn_hook`) makes the spawner run
   ``python -m nbapps.runner.hub_launch``, which becomes the runner command;
5. the gallery's proxy talks to the server on ``127.0.0.1:<port>`` with the runner token, as
   for a local runner; pools, kernel ownership and memory are read from the runner folder;
6. ``stop`` is ``DELETE`` of the named server (``remove``: the Hub forgets it), then whatever of
   the runner is still alive is killed as for a local runner.

So this (default, ``files = "shared"``) way needs the spawned server on the gallery's machine,
sharing its runtime folder (``LocalProcessSpawner`` / ``SimpleLocalProcessSpawner``, or
``SystemdSpawner``). For spawners that run servers elsewhere (KubeSpawner, DockerSpawner),
:mod:`.hub_remote` fetches the folder and reports over HTTP (``files = "fetch"``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psutil

from .hub_launch import PID_FILE, SPEC
from .process import Runner, RunnerError, RunnerState

log = logging.getLogger("nbapps.runner.hub")

@dataclass(frozen=True)
class HubRunnerSettings:
    """Where the Hub is and whose servers the runners are."""

    #: the Hub's REST API as the gallery reaches it (``http://hub:8081/hub/api``)
    api_url: str
    #: a token with ``servers!user=<account>`` (start, stop and read the account's servers)
    api_token: str
    #: the Hub user whose named servers the runners are
    account: str
    #: seconds the Hub may take to report a started server ready
    spawn_timeout: float = 120.0
    #: seconds one REST call may take
    request_timeout: float = 30.0
    #: how the spawned server gets its runner folder: "shared" (it sees the gallery's runtime
    #: folder: one machine or a shared volume) or "fetch" (it fetches the folder from the
    #: gallery and reports its status over HTTP: KubeSpawner, DockerSpawner; :mod:`.hub_remote`)
    files: str = "shared"

    def check(self) -> None:
        missing = [name for name, value in (("hub_api_url", self.api_url),
                                            ("hub_api_token", self.api_token),
                                            ("hub_account", self.account)) if not value]
        if missing:
            raise RunnerError(
                "the jupyterhub runner backend needs RuntimeConfiguration."
                + ", RuntimeConfiguration.".join(missing), code="NBA410")


class HubServers:
    """The Hub REST calls for one account's named servers."""

    def __init__(self, settings: HubRunnerSettings) -> None:
        self.settings = settings
        self.base = settings.api_url.rstrip("/")

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None
                    ) -> httpx.Response:
        url = f"{self.base}/{path}"
        headers = {"Authorization": f"token {self.settings.api_token}"}
        try:
            async with httpx.AsyncClient(timeout=self.settings.request_timeout) as client:
                resp = await client.request(method, url, headers=headers,
                                            content=json.dumps(body) if body is not None
                                            else None)
        except httpx.HTTPError as exc:
            raise RunnerError(f"JupyterHub did not answer {method} {url}: {exc}",
                              code="NBA412") from None
        if resp.status_code >= 500:
            raise RunnerError(f"JupyterHub failed {method} {url}: HTTP {resp.status_code} "
                              f"{_message(resp)}", code="NBA412")
        return resp

    def _path(self, name: str = "") -> str:
        user = f"users/{quote(self.settings.account, safe='')}"
        return f"{user}/servers/{quote(name, safe='')}" if name else user

    async def start(self, name: str, user_options: dict[str, Any], display_name: str = ""
                    ) -> None:
        """Ask for the named server (201: started, 202: the Hub is still starting it)."""
        body: dict[str, Any] = {"user_options": user_options}
        if display_name:
            body["display_name"] = display_name  # JupyterHub 6; older Hubs ignore it
        resp = await self._call("POST", self._path(name), body)
        if resp.status_code not in (201, 202):
            raise RunnerError(f"JupyterHub refused to start server {name!r} of "
                              f"{self.settings.account!r}: HTTP {resp.status_code} "
                              f"{_message(resp)}", code="NBA411")

    async def servers(self, *, include_stopped: bool = False) -> dict[str, dict[str, Any]]:
        """The account's named servers (the ``servers`` of its user model): running or
        starting ones, and with ``include_stopped`` the Hub's records of stopped ones too."""
        query = "?include_stopped_servers=1" if include_stopped else ""
        resp = await self._call("GET", self._path() + query)
        if resp.status_code != 200:
            raise RunnerError(f"JupyterHub refused to list the servers of "
                              f"{self.settings.account!r}: HTTP {resp.status_code} "
                              f"{_message(resp)}", code="NBA411")
        servers = resp.json().get("servers")
        return servers if isinstance(servers, dict) else {}

    async def server(self, name: str) -> dict[str, Any] | None:
        return (await self.servers()).get(name)

    async def wait_ready(self, name: str, timeout: float) -> dict[str, Any]:
        """Poll the server model until ``ready``; NBA413 when it stops or takes too long."""
        deadline = time.monotonic() + timeout
        seen_pending = False
        while True:
            model = await self.server(name)
            if model is not None and model.get("ready"):
                return model
            if model is not None and model.get("pending"):
                seen_pending = True
            elif seen_pending or model is None:
                raise RunnerError(f"JupyterHub server {name!r} stopped while starting; see the "
                                  f"Hub's log", code="NBA413")
            if time.monotonic() > deadline:
                raise RunnerError(f"JupyterHub server {name!r} not ready after {timeout:.0f}s",
                                  code="NBA413")
            await asyncio.sleep(0.1)

    async def stop(self, name: str, *, remove: bool = True, timeout: float = 60.0) -> None:
        """``DELETE`` the named server and wait until the Hub has stopped (and removed) it."""
        resp = await self._call("DELETE", self._path(name), {"remove": remove})
        if resp.status_code == 404:
            return
        if resp.status_code not in (202, 204):
            raise RunnerError(f"JupyterHub refused to stop server {name!r}: HTTP "
                              f"{resp.status_code} {_message(resp)}", code="NBA411")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = await self.server(name)
            if model is None or (not remove and not model.get("pending")
                                 and not model.get("ready")):
                return
            await asyncio.sleep(0.1)
        log.warning("JupyterHub server %r still there %.0fs after DELETE", name, timeout)


async def reap_hub_servers(settings: HubRunnerSettings, runtime_root: Path) -> list[str]:
    """Remove the account's named servers left by a previous gallery on ``runtime_root``.

    Called at start, before this gallery has any runner: a server whose ``user_options``
    name a runner folder under this runtime folder is a dead gallery's (its processes were
    reaped from the folder); servers of other replicas (other runtime folders) are left alone.
    A Hub that does not answer is logged, not fatal (runner starts then fail with NBA412).
    """
    hub = HubServers(settings)
    runners = (runtime_root / "runners").resolve()
    try:
        servers = await hub.servers(include_stopped=True)
    except RunnerError as exc:
        log.warning("could not list the JupyterHub servers of %s: %s", settings.account, exc)
        return []
    removed = []
    for name, model in servers.items():
        options = model.get("user_options") or {}
        folder = options.get("runner_dir") if isinstance(options, dict) else None
        if isinstance(folder, str) and Path(folder).resolve().parent == runners:
            try:
                await hub.stop(name, timeout=settings.request_timeout)
            except RunnerError as exc:
                log.warning("could not remove JupyterHub server %s: %s", name, exc)
                continue
            removed.append(name)
    if removed:
        log.info("removed %d JupyterHub server(s) of a previous gallery: %s", len(removed),
                 ", ".join(sorted(removed)))
    return removed


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else ""


class HubRunner(Runner):
    """A :class:`Runner` whose process is a JupyterHub named server (module docstring)."""

    def __init__(self, *args: Any, hub: HubRunnerSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hub = HubServers(hub)
        self.hub_settings = hub
        # one server per runner (a switch or restart may overlap the old runner of a version);
        # Hub server names are at most 30 lowercase letters, digits and single hyphens, so the
        # slug goes into the display name and user_options
        version = re.sub(r"[^0-9a-z]", "", self.release.version.lower())[:12] or "0"
        self.server_name = f"nba-{version}-{secrets.token_hex(3)}"
        self.display_name = f"{self.release.slug} {self.release.version[:12]}"
        self.hub_model: dict[str, Any] = {}
        self._hub_pid = 0
        self._requested = False

    @property
    def pid(self) -> int | None:
        if not self._hub_pid:
            with contextlib.suppress(OSError, ValueError):
                self._hub_pid = int((self.dir / PID_FILE).read_text(encoding="utf-8"))
        return self._hub_pid or None

    def alive(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            proc = psutil.Process(pid)
            return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def record(self) -> dict[str, Any]:
        return {**super().record(), "hub_server": self.server_name}

    def _write_spec(self) -> None:
        cmd, env = self.launch_command()
        spec = {"cmd": cmd, "env": env, "log": str(self.log_path)}
        path = self.dir / SPEC
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(spec, fh)

    def user_options(self) -> dict[str, Any]:
        """What the Hub-side hook reads (:func:`.hub_launch.pre_spawn_hook`); ``runner_dir``
        also tells whose server it is when a gallery restarts (:func:`reap_hub_servers`)."""
        return {"runner_dir": str(self.dir), "port": self.port,
                "nbapps": {"slug": self.slug, "version": self.release.version}}

    async def start(self, *, rendered: bool = False) -> None:
        """Prepare, ask the Hub for the server, wait for it and for the pools."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self.prepare)
            self._write_spec()
            options = self.user_options()
            self.started_at = time.monotonic()
            self._requested = True
            await self.hub.start(self.server_name, options, self.display_name)
            self.hub_model = await self.hub.wait_ready(self.server_name,
                                                       self.hub_settings.spawn_timeout)
            log.info("runner %s: JupyterHub server %s/%s pid %s on port %s", self.id,
                     self.hub_settings.account, self.server_name, self.pid, self.port)
            await self.wait_ready(rendered=rendered)
        except BaseException:
            self.state = RunnerState.FAILED
            await self.stop(remove=False)
            raise

    async def stop(self, *, remove: bool = True) -> None:
        """End the server's process group as a local runner's (SIGTERM: Voilà shuts its kernels
        down), then ``DELETE`` the named server (the Hub finds it gone at once instead of
        sending SIGINT, which Voilà takes seconds to act on), then kill what is left."""
        self.state = RunnerState.STOPPED if self.state != RunnerState.FAILED else self.state
        await asyncio.get_running_loop().run_in_executor(None, self._terminate)
        if self._requested:
            self._requested = False
            try:
                await self.hub.stop(self.server_name,
                                    timeout=self.settings.stop_timeout + 20.0)
            except RunnerError as exc:
                log.warning("runner %s: %s", self.id, exc)
        await super().stop(remove=remove)

    def _terminate(self) -> None:
        """SIGTERM to the server's process group; wait up to ``stop_timeout`` for its end."""
        pid = self.pid
        if pid is None or not self.alive():
            return
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.settings.stop_timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the process's end with a deadline

