"""Hub runners that run where the gallery's folders are not (``hub_runner_files = "fetch"``).

KubeSpawner, DockerSpawner and BatchSpawner start a server in another container or on another
machine: it cannot read the runner folder the gallery prepared, the gallery cannot read its
status file, see its processes or reach it on 127.0.0.1. A :class:`RemoteHubRunner` is a
:class:`~.hub_runner.HubRunner` that works over HTTP instead, in both directions:

1. the gallery prepares the runner folder as for every runner, and asks the Hub for the named
   server with ``user_options = {"runner": <id>, "port": ..., "launch_secret": ...}``;
2. the Hub-side hook (:func:`.hub_launch.pre_spawn_hook` with ``gallery_url``) moves the secret
   into the server's environment (never its command line) and runs ``python -m
   nbapps.runner.hub_launch --fetch <gallery>/api/runtime/runners/<id>/launch``;
3. the launcher POSTs its address with the secret (good for one launch) and gets the runner
   folder as a tar (:func:`pack_runner`), extracts it at the same absolute path (the server's
   image is the gallery's: same Python and nbapps at the same paths), builds the runtime's
   shared Voilà template folder itself, and becomes the runner as a shared-folder launch does;
4. the runner listens on every interface (its token guards it, as on loopback) and its kernel
   manager POSTs its status (pools, kernel ids, memory) to
   ``<gallery>/api/runtime/runners/<id>/status`` when it changes and every 2 s, with a status
   secret of its own (:mod:`nbapps.server.runner_remote`);
5. the gallery proxies to the address the launcher reported, reads pools, kernels and memory
   from the last status, counts the runner alive while statuses keep coming, and stops it
   with the Hub's ``DELETE`` only (no local signals: its processes are not here).

What a local runner's cgroup does, the server's own limits do (the pod's ``resources``); the
runner's Landlock sandbox and rlimits apply as everywhere (they are set up by the launched
process itself).
"""
from __future__ import annotations

import io
import secrets
import tarfile
import time
from typing import Any

from .hub_launch import RUNNER_ID
from .hub_runner import HubRunner
from .process import RunnerState

#: a runner whose last status is older than this (seconds) counts as gone
STATUS_STALE = 15.0


class RemoteHubRunner(HubRunner):
    """A Hub runner reached over HTTP (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cgroup = None  # the server's own limits apply where it runs
        #: where the gallery reaches the runner (the launcher reports it)
        self.host = ""
        #: the launcher's one-time credential, and the runner's for its status reports
        self._launch_secret: str | None = secrets.token_urlsafe(32)
        self.status_secret = secrets.token_urlsafe(32)
        self._status: dict[str, Any] = {}
        self._status_at = 0.0

    # -- what the Hub-side hook and the launcher see -------------------------------------------
    def user_options(self) -> dict[str, Any]:
        assert self._launch_secret is not None
        return {**super().user_options(), "runner": self.id,
                "launch_secret": self._launch_secret}

    def take_launch(self, secret: str, host: str) -> bool:
        """The launcher's call: its secret is good once; then ``host`` is where it listens."""
        expected, self._launch_secret = self._launch_secret, None
        if expected is None or not secrets.compare_digest(expected.encode(), secret.encode()):
            self._launch_secret = expected  # a wrong guess does not burn the real one
            return False
        self.host = host
        return True

    def pack(self) -> bytes:
        """The runner folder as a gzipped tar (what :func:`.hub_launch.fetch_runner` extracts;
        blocking: run in a thread). Its empty folders go too: the runner expects them."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
            for item in sorted(self.dir.iterdir()):
                tar.add(item, arcname=item.name)
        return buffer.getvalue()

    def voila_extra(self) -> list[tuple[str, Any]]:
        """Listening on every interface (the gallery is on another host); the status reported
        over HTTP with the status secret."""
        return [("Voila.ip", "0.0.0.0"),
                ("RunnerKernelManager.status_token", self.status_secret)]

    # -- status over HTTP ----------------------------------------------------------------------
    def status_secret_is(self, secret: str) -> bool:
        return secrets.compare_digest(self.status_secret.encode(), secret.encode())

    def take_status(self, data: dict[str, Any]) -> None:
        self._status = data
        self._status_at = time.monotonic()

    def read_status(self) -> dict[str, Any]:
        return dict(self._status)

    def owns_kernel(self, kernel_id: str) -> bool:
        return kernel_id in (self._status.get("kernel_ids") or ())

    def url(self, path: str, query: str = "") -> str:
        q = f"?{query}" if query else ""
        host = self.host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.base_path}{path}{q}"

    @property
    def pid(self) -> int | None:
        return None  # its processes are where the Hub ran it

    def alive(self) -> bool:
        """Starting: until the start gives up. Started: while its statuses keep coming."""
        if self.state in (RunnerState.STOPPED, RunnerState.FAILED):
            return False
        if not self._status_at:
            return self.state == RunnerState.STARTING
        return time.monotonic() - self._status_at < STATUS_STALE

    def processes(self) -> list[Any]:
        return []

    def memory(self) -> dict[str, int]:
        """As its last status says (the runner measures its own process tree)."""
        status = self._status
        rss = int(status.get("rss", 0))
        return {"rss": rss, "pss": int(status.get("pss", rss)),
                "processes": int(status.get("processes", 0))}


__all__ = ["RUNNER_ID", "STATUS_STALE", "RemoteHubRunner"]
