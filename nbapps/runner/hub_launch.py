"""The two ends of a runner started as a JupyterHub named server (see :mod:`.hub_runner`).

The gallery prepares a runner folder exactly as for a local runner, writes the command line and
environment it would have run into ``<runner>/hub-launch.json`` and asks the Hub to start a
named server with ``user_options = {"runner_dir": ..., "port": ...}``. In the Hub:

- :func:`pre_spawn_hook` (set in ``jupyterhub_config.py``) checks the folder is a runner folder
  under the gallery's runtime root and makes the spawner run ``python -m
  nbapps.runner.hub_launch --runner-dir <folder>`` on that port;
- :func:`main` (what the spawner runs) records its pid, sends its output to the runner's log and
  becomes the runner's own command with the runner's own environment: the Hub's variables
  (``JUPYTERHUB_API_TOKEN`` among them) never reach app code.

This needs the spawned process to see the gallery's runtime folder: one machine
(``LocalProcessSpawner``, ``SimpleLocalProcessSpawner``) or a shared volume. With
``gallery_url`` (``hub_runner_files = "fetch"``, :mod:`.hub_remote`) the launcher fetches the
folder from the gallery instead (``--fetch``, :func:`fetch_runner`). This module runs in the
Hub: standard library only at import.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import socket
import sys
import tarfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SPEC = "hub-launch.json"
PID_FILE = "hub-launch.pid"
#: the launch secret, from the hook to the launcher (never on a command line)
SECRET_ENV = "NBAPPS_LAUNCH_SECRET"
#: where the launched server listens, as the gallery reaches it (default: the host name's IP)
HOST_ENV = "NBAPPS_RUNNER_HOST"
#: runner ids in launch and status URLs
RUNNER_ID = r"[A-Za-z0-9~][A-Za-z0-9~._-]{0,200}"
#: where a remote runner reports its status (:mod:`.status_report`)
URL_ENV = "NBAPPS_STATUS_URL"
#: a configuration file the runner's kernel manager deletes once Voilà has read it
FORGET_CONFIG_ENV = "NBAPPS_FORGET_CONFIG"


def runner_dir_under(root: str | Path, value: object) -> Path:
    """``value`` as a runner folder ``<root>/runners/<id>`` holding a launch spec, or ValueError.

    ``user_options`` come from whoever may start the account's servers: the folder must be
    exactly one level below ``<root>/runners`` after resolving links.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("user_options.runner_dir is missing")
    folder = Path(value).resolve()
    runners = (Path(root) / "runners").resolve()
    if folder.parent != runners or not (folder / SPEC).is_file():
        raise ValueError(f"{value!r} is not an nbapps runner folder under {runners}")
    return folder


def pre_spawn_hook(runtime_root: str | Path, account: str, python: str = "",
                   other: Callable[[Any], Any] | None = None, gallery_url: str = ""
                   ) -> Callable[[Any], Any]:
    """A ``Spawner.pre_spawn_hook`` (Hub side) for the servers of ``account``.

    ``runtime_root``: the gallery's ``<data dir>/runtime`` as the spawned process sees it;
    ``python``: the Python with nbapps installed (default: the Hub's); ``other``: the hook for
    every other user's servers (the Hub's previous ``pre_spawn_hook``, if any), untouched.
    ``gallery_url``: for servers that do not see the gallery's runtime folder
    (``RuntimeConfiguration.hub_runner_files = "fetch"``, :mod:`.hub_remote`), the gallery's
    address as they reach it: they fetch their runner folder from there, and only from there
    (``user_options`` name a runner, never a URL).
    """
    exe = python or sys.executable
    fetch_from = gallery_url.rstrip("/")

    def hook(spawner: Any) -> Any:
        if spawner.user.name != account:
            return other(spawner) if other is not None else None
        options = spawner.user_options or {}
        if isinstance(options.get("user_options"), dict):  # JupyterHub < 6 passes the body
            options = options["user_options"]
        port = int(options.get("port", 0))
        if not 0 < port < 65536:
            raise ValueError("user_options.port must be a TCP port")
        spawner.port = port
        spawner.args = []
        if not fetch_from:
            folder = runner_dir_under(runtime_root, options.get("runner_dir"))
            spawner.cmd = [exe, "-m", "nbapps.runner.hub_launch", "--runner-dir", str(folder)]
            return None
        runner = options.get("runner")
        secret = options.get("launch_secret")
        if not isinstance(runner, str) or not re.fullmatch(RUNNER_ID, runner):
            raise ValueError("user_options.runner is not an nbapps runner id")
        if not isinstance(secret, str) or not 20 <= len(secret) <= 200:
            raise ValueError("user_options.launch_secret is missing")
        spawner.cmd = [exe, "-m", "nbapps.runner.hub_launch", "--fetch",
                       f"{fetch_from}/api/runtime/runners/{runner}/launch"]
        spawner.environment = {**(spawner.environment or {}), SECRET_ENV: secret}
        return None

    return hook


def fetch_runner(url: str, secret: str, host: str = "") -> tuple[Path, Path]:
    """The launcher's call to the gallery (``--fetch``): report where this server listens
    (``host``; default: the address of this machine's name, a pod's IP) and extract the runner
    folder it answers with at its absolute path; returns (runner folder, runtime root)."""
    address = host or os.environ.get(HOST_ENV) or socket.gethostbyname(socket.gethostname())
    request = urllib.request.Request(
        url, method="POST", data=json.dumps({"host": address}).encode(),
        headers={"Authorization": f"token {secret}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (the hook's URL)
        folder = Path(response.headers["X-Nbapps-Runner-Dir"])
        runtime_root = Path(response.headers["X-Nbapps-Runtime-Root"])
        body = response.read()
    if not folder.is_absolute() or folder.parent != runtime_root / "runners":
        raise SystemExit(f"nbapps: the gallery named an odd runner folder: {folder}")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        tar.extractall(folder, filter="data")
    if not (runtime_root / "share").is_dir():  # the shared Voilà template folder
        from .config import prepare_share

        prepare_share(runtime_root)
    return folder, runtime_root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runner.hub_launch")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--runner-dir")
    where.add_argument("--fetch", metavar="URL")
    args, _ignored = parser.parse_known_args(argv)  # a spawner's own args are not ours
    status: dict[str, str] = {}
    if args.fetch:
        folder, _root = fetch_runner(args.fetch, os.environ.pop(SECRET_ENV, ""))
        status = {URL_ENV: args.fetch.removesuffix("/launch") + "/status",
                  FORGET_CONFIG_ENV: str(folder / "config" / "voila.py")}
    else:
        folder = Path(args.runner_dir)
    spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    cmd: list[str] = [str(x) for x in spec["cmd"]]
    env: dict[str, str] = {str(k): str(v) for k, v in spec["env"].items()}
    env.update(status)
    pid_tmp = folder / f".{PID_FILE}.tmp"
    pid_tmp.write_text(str(os.getpid()), encoding="utf-8")
    os.replace(pid_tmp, folder / PID_FILE)
    log_path = Path(spec["log"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.chdir(folder)
    os.execve(cmd[0], cmd, env)  # noqa: S606 (the gallery's own runner command)


if __name__ == "__main__":
    main()
