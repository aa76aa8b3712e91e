"""Ending processes for good (kernels, runners and their children)."""
from __future__ import annotations

import logging

import psutil

log = logging.getLogger("nbapps.processes")


def kill_processes(procs: list[psutil.Process], timeout: float = 5.0) -> int:
    """SIGKILL ``procs`` and wait up to ``timeout`` for them; returns how many were signalled."""
    n = 0
    for p in procs:
        try:
            p.kill()
            n += 1
        except psutil.Error:
            pass
    if procs:
        _, alive = psutil.wait_procs(procs, timeout=timeout)
        for p in alive:
            log.warning("process %s survived SIGKILL", p.pid)
    return n


def kill_process_tree(pid: int, timeout: float = 3.0) -> int:
    """SIGKILL process ``pid`` and all its descendants; returns the number signalled."""
    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return 0
    return kill_processes(procs, timeout)
