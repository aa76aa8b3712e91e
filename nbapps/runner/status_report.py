"""A runner's status over HTTP, for runners the gallery cannot read files of
(:mod:`nbapps.runner.hub_remote`): the kernel manager's status (pools, kernels) with the kernel
ids and the memory of the runner's process tree, POSTed to the gallery when it changes and at
least every :data:`HEARTBEAT` seconds (the gallery counts a silent runner gone after 15 s).
Runs inside the runner's Voilà process; one report in flight at a time, never blocking it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from .hub_launch import URL_ENV

log = logging.getLogger("Voila")

#: seconds between two reports of an unchanged status
HEARTBEAT = 2.0


#: /proc/<pid>/smaps_rollup (Linux 4.14+) makes PSS cheap to read (else psutil reads every
#: mapping of every process)
_HAS_PSS = os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")


def tree_memory(pid: int) -> dict[str, int]:
    """RSS, PSS (RSS where unknown) and process count of ``pid`` and its descendants (a
    runner: Voilà and its kernels; forked kernels' shared pages count once in PSS)."""
    rss = pss = count = 0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {"rss": 0, "pss": 0, "processes": 0}
    for proc in tree:
        try:
            info = proc.memory_full_info() if _HAS_PSS else proc.memory_info()
        except psutil.Error:
            try:
                info = proc.memory_info()
            except psutil.Error:
                continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        count += 1
    return {"rss": rss, "pss": pss, "processes": count}


class StatusReporter:
    """POSTs a runner's status to ``url`` with ``token`` (see the module docstring)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self._sent_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def report(self, status: dict[str, Any], kernel_ids: list[str], changed: bool) -> None:
        """Send ``status`` if it changed or the heartbeat is due (and none is in flight)."""
        now = time.monotonic()
        if self._task is not None and not self._task.done():
            return
        if not changed and now - self._sent_at < HEARTBEAT:
            return
        self._sent_at = now
        body = {**status, "kernel_ids": kernel_ids, "time": time.time(),
                **tree_memory(os.getpid())}
        self._task = asyncio.ensure_future(self._send(body))

    async def _send(self, body: dict[str, Any]) -> None:
        request = HTTPRequest(self.url, method="POST", body=json.dumps(body),
                              headers={"Authorization": f"token {self.token}",
                                       "Content-Type": "application/json"},
                              connect_timeout=5, request_timeout=10)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except Exception as exc:  # noqa: BLE001 - the gallery may be away: next beat
            log.warning("status report to the gallery failed: %s", exc)
            return
        if response.code != 204:
            log.warning("status report to the gallery: HTTP %s", response.code)
            return
        self.sent += 1


__all__ = ["HEARTBEAT", "URL_ENV", "StatusReporter", "tree_memory"]
