"""A Hub runner reached over HTTP (:mod:`nbapps.runner.hub_remote`): its launch secret, its
liveness from status reports and what it reads from them (no Hub needed here; the whole path
with a real Hub is tests/test_hub_runner.py)."""
from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

from nbapps.runner import hub_remote
from nbapps.runner.config import RunnerSettings
from nbapps.runner.hub_remote import RemoteHubRunner
from nbapps.runner.hub_runner import HubRunnerSettings
from nbapps.runner.process import AppRelease, RunnerState


def remote(tmp_path: Path) -> RemoteHubRunner:
    hub = HubRunnerSettings(api_url="http://hub/hub/api", api_token="t", account="apps",
                            files="fetch")
    return RemoteHubRunner(AppRelease("loan", "99e27a3cc117aa", tmp_path), RunnerSettings(),
                           tmp_path, tmp_path, hub=hub)


def test_the_launch_secret_works_once_and_a_wrong_one_burns_nothing(tmp_path):
    r = remote(tmp_path)
    secret = r.user_options()["launch_secret"]
    assert r.user_options()["runner"] == r.id and r.cgroup is None
    assert not r.take_launch("guessed", "10.0.0.9") and r.host == ""
    assert r.take_launch(secret, "10.0.0.7") and r.host == "10.0.0.7"
    assert not r.take_launch(secret, "10.0.0.9") and r.host == "10.0.0.7"
    assert r.url("voila/render/app.ipynb").startswith("http://10.0.0.7:0/")
    assert r.status_secret_is(r.status_secret) and not r.status_secret_is("guessed")


def test_alive_while_statuses_come_and_read_from_them(tmp_path, monkeypatch):
    r = remote(tmp_path)
    assert r.alive() and r.pid is None and r.processes() == []  # starting, no status yet
    r.take_status({"kernels": 3, "in_use": 1, "kernel_ids": ["k1", "k2", "k3"],
                   "pools": {"app.ipynb": {"started": 2}}, "rss": 300, "pss": 200,
                   "processes": 4, "time": time.time()})
    r.state = RunnerState.READY
    assert r.alive() and r.owns_kernel("k2") and not r.owns_kernel("k9")
    stats = r.sample()
    assert (stats.kernels, stats.in_use, stats.rss, stats.memory, stats.processes) == \
        (3, 1, 300, 200, 4)
    monkeypatch.setattr(hub_remote, "STATUS_STALE", 0.0)  # no report for too long: gone
    assert not r.alive()
    r.state = RunnerState.STOPPED
    monkeypatch.setattr(hub_remote, "STATUS_STALE", 60.0)
    assert not r.alive()


def test_the_folder_goes_whole_with_its_empty_folders(tmp_path):
    r = remote(tmp_path)
    for sub in ("app", "conn", "config", "jupyter/runtime"):
        (r.dir / sub).mkdir(parents=True)
    (r.dir / "app" / "app.ipynb").write_text("{}")
    with tarfile.open(fileobj=io.BytesIO(r.pack()), mode="r:gz") as tar:
        names = set(tar.getnames())
    assert {"app", "app/app.ipynb", "conn", "config", "jupyter/runtime"} <= names


def test_a_runner_reports_its_status_with_its_token_on_change_and_heartbeat():
    """:class:`StatusReporter` against a real HTTP server on loopback."""
    import asyncio
    import json
    import os

    from tornado import httpserver, netutil, web

    from nbapps.runner.status_report import StatusReporter, tree_memory

    received: list[tuple[str, dict]] = []

    class Status(web.RequestHandler):
        def post(self) -> None:
            received.append((self.request.headers.get("Authorization", ""),
                             json.loads(self.request.body)))
            self.set_status(204)

    async def scenario() -> None:
        sockets = netutil.bind_sockets(0, "127.0.0.1")
        server = httpserver.HTTPServer(web.Application([(r"/status", Status)]))
        server.add_sockets(sockets)
        url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/status"
        reporter = StatusReporter(url, "s3cret")

        async def settle() -> None:
            task = reporter._task  # noqa: SLF001 - the report in flight
            if task is not None:
                await task

        try:
            reporter.report({"kernels": 1}, ["k1"], changed=True)
            await settle()
            reporter.report({"kernels": 1}, ["k1"], changed=False)  # no change, beat not due
            await settle()
            reporter.report({"kernels": 2}, ["k1", "k2"], changed=True)
            await settle()
        finally:
            server.stop()
        assert reporter.sent == 2

    asyncio.run(scenario())
    assert [token for token, _ in received] == ["token s3cret"] * 2
    first, second = (body for _, body in received)
    assert first["kernel_ids"] == ["k1"] and second["kernels"] == 2
    assert first["rss"] > 0 and first["processes"] >= 1 and first["time"] > 0
    own = tree_memory(os.getpid())
    assert own["rss"] > 0 and own["pss"] > 0
