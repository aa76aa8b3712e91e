"""Runner state on disk, so a gallery killed with SIGKILL leaves nothing running for long.

The supervisor keeps ``<runtime>/supervisor.json`` (atomic writes): the gallery's pid and, per
runner, the Voilà pid with its start time and the runner folder. Kernels are found by their
command line, which names their connection file inside the runner folder. At the next start,
:func:`reap_orphans` stops every process a previous gallery left: the recorded Voilà processes
(pid and start time must match, so a reused pid is never hit) and any process whose command line
mentions a runner folder. A live gallery that still owns the runtime folder is never touched.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..files import atomic_write_text
from ..processes import kill_processes
from .process import find_processes_mentioning, remove_tree

log = logging.getLogger("nbapps.runner")

STATE_FILE = "supervisor.json"
RUNNERS_DIR = "runners"


@dataclass(frozen=True)
class ReapReport:
    """What :func:`reap_orphans` found and stopped."""

    previous_pid: int | None
    killed: int
    removed_dirs: int


def read_state(runtime_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((runtime_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(runtime_dir: Path, runners: list[dict[str, Any]]) -> None:
    """Record this gallery and its runners (temp file + rename)."""
    data = {"gallery_pid": os.getpid(), "gallery_create_time": _create_time(os.getpid()),
            "updated": time.time(), "runners": runners}
    atomic_write_text(runtime_dir / STATE_FILE, json.dumps(data, indent=1))


def clear_state(runtime_dir: Path) -> None:
    (runtime_dir / STATE_FILE).unlink(missing_ok=True)


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _same_process(pid: Any, create_time: Any) -> psutil.Process | None:
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if create_time and abs(proc.create_time() - float(create_time)) > 1.0:
            return None
        return proc
    except psutil.Error:
        return None


def owner_alive(runtime_dir: Path) -> int | None:
    """The pid of another live gallery that owns ``runtime_dir``, if there is one."""
    state = read_state(runtime_dir)
    pid = state.get("gallery_pid")
    if pid == os.getpid():
        return None
    proc = _same_process(pid, state.get("gallery_create_time"))
    return proc.pid if proc is not None and proc.is_running() else None


def reap_orphans(runtime_dir: Path) -> ReapReport:
    """Stop the processes and remove the folders of runners left by a previous gallery."""
    state = read_state(runtime_dir)
    procs: dict[int, psutil.Process] = {}
    for rec in state.get("runners", []) or []:
        proc = _same_process(rec.get("pid"), rec.get("create_time"))
        if proc is not None:
            procs[proc.pid] = proc
    runners = runtime_dir / RUNNERS_DIR
    for proc in find_processes_mentioning(str(runners) + os.sep):
        procs.setdefault(proc.pid, proc)
    killed = kill_processes(list(procs.values())) if procs else 0
    removed = 0
    if runners.is_dir():
        for child in runners.iterdir():
            remove_tree(child)
            removed += 1
    if killed or removed:
        log.warning("stopped %d process(es) and removed %d folder(s) left by a previous gallery "
                    "(pid %s)", killed, removed, state.get("gallery_pid"))
    clear_state(runtime_dir)
    prev = state.get("gallery_pid")
    return ReapReport(prev if isinstance(prev, int) else None, killed, removed)
