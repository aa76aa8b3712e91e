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
(``LocalProcessSpawner``, ``SimpleLocalProcessSpawner``) or a shared volume.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SPEC = "hub-launch.json"
PID_FILE = "hub-launch.pid"


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
                   other: Callable[[Any], Any] | None = None) -> Callable[[Any], Any]:
    """A ``Spawner.pre_spawn_hook`` (Hub side) for the servers of ``account``.

    ``runtime_root``: the gallery's ``<data dir>/runtime`` as the spawned process sees it;
    ``python``: the Python with nbapps installed (default: the Hub's); ``other``: the hook for
    every other user's servers (the Hub's previous ``pre_spawn_hook``, if any), untouched.
    """
    exe = python or sys.executable

    def hook(spawner: Any) -> Any:
        if spawner.user.name != account:
            return other(spawner) if other is not None else None
        options = spawner.user_options or {}
        if isinstance(options.get("user_options"), dict):  # JupyterHub < 6 passes the body
            options = options["user_options"]
        folder = runner_dir_under(runtime_root, options.get("runner_dir"))
        port = int(options.get("port", 0))
        if not 0 < port < 65536:
            raise ValueError("user_options.port must be a TCP port")
        spawner.port = port
        spawner.cmd = [exe, "-m", "nbapps.runner.hub_launch", "--runner-dir", str(folder)]
        spawner.args = []
        return None

    return hook


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runner.hub_launch")
    parser.add_argument("--runner-dir", required=True)
    args, _ignored = parser.parse_known_args(argv)  # a spawner's own args are not ours
    folder = Path(args.runner_dir)
    spec = json.loads((folder / SPEC).read_text(encoding="utf-8"))
    cmd: list[str] = [str(x) for x in spec["cmd"]]
    env: dict[str, str] = {str(k): str(v) for k, v in spec["env"].items()}
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
