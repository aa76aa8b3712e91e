"""End to end: the real gallery server with the runner runtime wired in (make_runtime), its
settings from ``RuntimeConfiguration`` and its releases from the catalog (``CatalogAppSource``)."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import psutil
import pytest

from nbapps.runner.source import AppSource
from tests.server_harness import build_archive, new_data_dir
from tests.test_runner_fixtures import widget_app_notebook

pytestmark = pytest.mark.kernel


def test_gallery_serves_an_approved_app_through_the_runtime(tmp_path):
    from nbapps.server.app import NbappsServer

    data_dir, db_url, users = new_data_dir(tmp_path)
    nb = widget_app_notebook()
    nb.metadata["nbapps"].update(title="Demo", description="d")
    # the gallery's own check wants every widget cell to display something (NBA074)
    nb.cells[-1].source += "\nfrom IPython.display import display\ndisplay('shown')"
    archive = build_archive(tmp_path / "bundle", nb)

    runtimes = []

    class Server(NbappsServer):
        def make_runtime(self, ctx):  # what `nbapps serve` does, recorded
            runtimes.append(super().make_runtime(ctx))
            return runtimes[-1]

    server = Server()
    server.initialize(["--port=0", f"--data-dir={data_dir}", f"--db-url={db_url}",
                       "--log-level=WARN", "--RuntimeConfiguration.pool_size=1",
                       "--RuntimeConfiguration.custom_pool_size=1"])
    ready = threading.Event()
    thread = threading.Thread(
        target=lambda: asyncio.run(server.serve(ready=ready, install_signals=False)),
        daemon=True)
    thread.start()
    pids: list[int] = []
    try:
        assert ready.wait(60)
        base = str(server.url).rstrip("/")
        up = httpx.post(f"{base}/api/submissions", content=archive, timeout=60,
                        headers={"Content-Type": "application/gzip",
                                 "Authorization": f"Bearer {users['ana'].token}"})
        assert up.status_code == 201, up.text
        runtime = runtimes[-1]
        assert isinstance(runtime.source, AppSource)
        assert runtime.settings.runner.pool_size == 1
        assert runtime.settings.runner.url_prefix == "/apps/"
        deadline = time.monotonic() + 240
        while True:  # the gallery checks the submission before it can be approved
            sub = httpx.get(f"{base}/api/submissions/{up.json()['id']}", timeout=30,
                            headers={"Authorization": f"Bearer {users['ana'].token}"}).json()
            if sub.get("state") != "validating":
                assert sub["state"] == "submitted", sub["check"]
                break
            assert time.monotonic() < deadline, sub
            time.sleep(0.2)
        decided = httpx.post(f"{base}/api/submissions/{up.json()['id']}/decision",
                             json={"decision": "approve", "comment": "ok"}, timeout=60,
                             headers={"Authorization": f"Bearer {users['rita'].token}"})
        assert decided.status_code == 200, decided.text
        app = up.json().get("app")
        slug = app if isinstance(app, str) else (app or {}).get("slug", "demo")
        anon = httpx.get(f"{base}/apps/{slug}/", timeout=30)
        assert anon.status_code == 302 and anon.headers["location"].startswith("/login")
        auth = {"Authorization": f"Bearer {users['vic'].token}"}
        deadline = time.monotonic() + 180
        while True:
            r = httpx.get(f"{base}/apps/{slug}/?n=4", headers=auth, timeout=120)
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.headers.get("retry-after"), r.status_code
            assert time.monotonic() < deadline
            time.sleep(1)
        assert "RESULT 4 x 0.5 16" in r.text
        snap = runtimes[-1].snapshot()
        pids = [s["pid"] for s in snap]
        assert pids and all(psutil.pid_exists(p) for p in pids)
        assert httpx.get(f"{base}/apps/nope/", headers=auth, timeout=30).status_code in (403, 404)
    finally:
        server.request_stop()
        thread.join(60)
    assert not thread.is_alive()
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
