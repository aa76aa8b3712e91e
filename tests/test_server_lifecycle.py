"""The server as a process: config files, SIGTERM, and SIGKILL in the middle of an upload."""
from __future__ import annotations

import signal
import socket
import time
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
import pytest

from nbapps.catalog import open_catalog
from nbapps.server.authz import OPEN_APPS, Requirement
from nbapps.server.base import PageHandler
from tests.server_harness import (
    ThreadServer,
    build_archive,
    make_users,
    start_process,
    stop_process,
)


@pytest.fixture
def data(tmp_path):
    data_dir = tmp_path / "data"
    db_url = f"sqlite:///{data_dir / 'nbapps.db'}"
    cat = open_catalog(db_url)
    try:
        users = make_users(cat, {"ana": "analyst", "rita": "reviewer"})
    finally:
        cat.close()
    return data_dir, db_url, users


def test_config_file_in_cwd_and_template_override_then_sigterm(tmp_path, data):
    data_dir, db_url, users = data
    work = tmp_path / "work"
    (work / "tpl").mkdir(parents=True)
    (work / "jupyter_nbapps_config.py").write_text(
        'c.NbappsServer.site_name = "Acme apps"\n'
        'c.NbappsServer.template_paths = ["tpl"]\n')
    (work / "tpl" / "login.html").write_text(
        '{% extends "base.html" %}{% block content %}<p id="custom">Custom login for '
        '{{ site_name }}</p>{% endblock %}')
    proc, url = start_process(data_dir, db_url, cwd=work)
    try:
        page = httpx.get(url + "/login", timeout=30)
        assert page.status_code == 200
        assert '<p id="custom">Custom login for Acme apps</p>' in page.text
        assert "<title>Acme apps</title>" in page.text
    finally:
        code = stop_process(proc, signal.SIGTERM)
    assert code == 0
    assert (data_dir / "cookie_secret").stat().st_mode & 0o777 == 0o600
    log = "".join(proc.log_lines)  # type: ignore[attr-defined]
    assert "received SIGTERM" in log and "stopped" in log


def test_sigkill_during_upload_leaves_nothing_and_restart_is_clean(tmp_path, data):
    data_dir, db_url, users = data
    archive = build_archive(tmp_path / "b")
    token = users["ana"].token
    proc, url = start_process(data_dir, db_url)
    uploads = data_dir / "tmp" / "uploads"
    try:
        host, port = urlsplit(url).hostname, urlsplit(url).port
        sock = socket.create_connection((host, port), timeout=30)
        half = len(archive) // 2
        sock.sendall((f"POST /api/submissions HTTP/1.1\r\nHost: {host}\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Type: application/gzip\r\n"
                      f"Content-Length: {len(archive)}\r\n\r\n").encode() + archive[:half])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the server is spooling the body
            parts = list(uploads.glob("upload-*.part"))
            if parts and parts[0].stat().st_size >= half:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the upload never reached the spool file")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        sock.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert list(uploads.iterdir()), "the killed server should have left its spool file"
    cat = open_catalog(db_url)
    try:
        assert cat.count_versions() == 0
        assert cat.list_apps(live_only=False).total == 0
    finally:
        cat.close()

    proc, url = start_process(data_dir, db_url)
    try:
        assert not list(uploads.iterdir()), "leftovers of the killed upload not removed"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
            assert c.get("/api/submissions").json()["items"] == []
            r = c.post("/api/submissions", content=archive)
            assert r.status_code == 201, r.text
            assert c.get("/api/submissions").json()["items"][0]["id"] == r.json()["id"]
    finally:
        assert stop_process(proc) == 0


class _EchoAppHandler(PageHandler):
    """Stands in for the runner's handler: only to see the hook's wiring."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}

    def get(self, slug: str, path: str = "") -> None:
        self.finish(f"runner of {slug} at /{path}")

    def post(self, slug: str, path: str = "") -> None:  # deliberately not declared
        self.finish("must never run")


class _FakeRuntime:
    handler_class = _EchoAppHandler

    def __init__(self) -> None:
        self.started_with = None
        self.closed = False

    async def start(self, ctx) -> None:
        self.started_with = ctx

    async def close(self) -> None:
        self.closed = True


def test_runtime_hook_is_wired_and_follows_the_lifecycle(tmp_path, data):
    data_dir, db_url, users = data
    server = ThreadServer(data_dir, db_url)
    runtime = _FakeRuntime()
    server.server.runtime = runtime
    url = server.start().rstrip("/")
    try:
        assert runtime.started_with is not None and runtime.started_with.runtime is runtime
        with httpx.Client(base_url=url, timeout=30) as anon:
            assert anon.get("/apps/some-app/x").status_code == 302  # still needs an account
        headers = {"Authorization": f"Bearer {users['ana'].token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            r = c.get("/apps/some-app/x")
            assert r.status_code == 200 and r.text == "runner of some-app at /x"
            # deny by default: a method the handler implements but does not declare
            denied = c.post("/apps/some-app/x")
            assert denied.status_code == 403 and "must never run" not in denied.text
            assert c.delete("/apps/some-app/x").status_code == 405
    finally:
        server.stop()
    assert runtime.closed
