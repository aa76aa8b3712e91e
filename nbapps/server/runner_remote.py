"""The gallery's side of runners the Hub started elsewhere (:mod:`nbapps.runner.hub_remote`).

``POST <base>api/runtime/runners/<id>/launch``
    The launcher of a starting runner: ``Authorization: token <launch secret>`` (good once),
    JSON ``{"host": "<where it listens>"}``. Answers the runner folder as a gzipped tar, with
    ``X-Nbapps-Runner-Dir`` and ``X-Nbapps-Runtime-Root`` saying where it goes.
``POST <base>api/runtime/runners/<id>/status``
    The runner's kernel manager: ``Authorization: token <status secret>``, the status as JSON
    (:mod:`nbapps.runner.status_report`). 204.

These are machine calls authenticated by per-runner secrets, not by a person: no cookie, no
XSRF token (a browser cannot forge the ``Authorization`` header cross-site). Anything wrong (no
such runner of this kind, a wrong or used secret) is a 404 that tells nothing, logged.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

from tornado import web

from ..runner.hub_launch import RUNNER_ID
from ..runner.hub_remote import RemoteHubRunner

log = logging.getLogger("nbapps.runner.hub")

#: largest status report accepted (a runner with hundreds of kernels stays far below)
MAX_STATUS_BYTES = 256 * 1024


def runner_remote_routes(runtime: Any, base: str) -> list[tuple[str, type, dict[str, Any]]]:
    """The two routes, for the gallery's handlers (before its own API routes)."""
    prefix = f"{base}api/runtime/runners/(?P<runner_id>{RUNNER_ID})"
    kwargs = {"runtime": runtime}
    return [(f"{prefix}/launch", RunnerLaunchHandler, kwargs),
            (f"{prefix}/status", RunnerStatusHandler, kwargs)]


class _RunnerCall(web.RequestHandler):
    def initialize(self, runtime: Any) -> None:
        self.runtime = runtime

    def check_xsrf_cookie(self) -> None:
        """Secret-authenticated machine calls (module docstring)."""

    def runner(self, runner_id: str) -> RemoteHubRunner | None:
        runner = self.runtime.runner_by_id(runner_id)
        return runner if isinstance(runner, RemoteHubRunner) else None

    def secret(self) -> str:
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        return value.strip() if scheme.lower() == "token" else ""

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def refuse(self, runner_id: str, why: str) -> None:
        log.warning("refused a %s call for runner %s from %s: %s", self.request.path.rsplit(
            "/", 1)[-1], runner_id, self.request.remote_ip, why)
        self.set_status(404)
        self.finish({"code": "NBA302", "message": "not found"})


class RunnerLaunchHandler(_RunnerCall):
    async def post(self, runner_id: str) -> None:
        runner = self.runner(runner_id)
        host = str(self.json_body().get("host") or self.request.remote_ip or "")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            self.refuse(runner_id, f"not an IP address: {host[:60]!r}")
            return
        if runner is None or not runner.take_launch(self.secret(), host):
            self.refuse(runner_id, "no such runner starting, or a wrong or used secret")
            return
        packed = await asyncio.get_running_loop().run_in_executor(None, runner.pack)
        log.info("runner %s: its folder went to the server at %s (%d bytes)", runner.id, host,
                 len(packed))
        self.set_header("Content-Type", "application/gzip")
        self.set_header("X-Nbapps-Runner-Dir", str(runner.dir))
        self.set_header("X-Nbapps-Runtime-Root", str(runner.runtime_root))
        self.finish(packed)


class RunnerStatusHandler(_RunnerCall):
    async def post(self, runner_id: str) -> None:
        runner = self.runner(runner_id)
        secret = self.secret()
        if runner is None or not secret or not runner.status_secret_is(secret):
            self.refuse(runner_id, "no such runner, or a wrong secret")
            return
        if len(self.request.body or b"") > MAX_STATUS_BYTES:
            self.set_status(413)
            self.finish()
            return
        runner.take_status(self.json_body())
        self.access_log_level = logging.DEBUG  # every 2 s per runner: like a probe
        self.set_status(204)
        self.finish()


__all__ = ["RunnerLaunchHandler", "RunnerStatusHandler", "runner_remote_routes"]
