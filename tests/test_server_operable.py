"""Operability (issue 13 item 5) on real servers: ``/readyz`` per check and its recovery,
process and latency metrics, JSON logs in UTC with a request id, and that id reaching the app
runner's own log."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from nbapps.server.request_id import sane_request_id
from tests.server_harness import ROOT, build_archive, new_data_dir, probe_gallery, stop_process


@pytest.mark.parametrize(("value", "kept"), [
    ("0f3a9c2e4b5d6e7f8a9b0c1d2e3f4a5b", True),            # nginx $request_id
    ("4b6f0c1e-5d2a-4c8e-9a7b-1f2e3d4c5b6a", True),       # a UUID
    ("lb:01HZX7.a_b-c", True),
    ("", False), ("has space", False), ("a" * 129, False), ('x"}{', False), ("é", False),
])
def test_sane_request_id(value, kept):
    assert (sane_request_id(value) == value) is kept


def _metric(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_readyz_checks_store_recovery_metrics_and_request_id(tmp_path):
    with probe_gallery(tmp_path) as g:
        anon = httpx.Client(base_url=g.url, timeout=30)
        r = anon.get("/readyz")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status"] == "ready" and "failed" not in body
        assert set(body["checks"]) == {"catalog", "store", "runtime"}
        for state in body["checks"].values():
            assert state["ok"] is True and 0 <= state["seconds"] < 2
        assert str(g.data_dir) not in r.text and "sqlite" not in r.text
        assert anon.get("/healthz").json() == {"status": "ok", "catalog": True}

        # the store's folder disappears (an unmounted volume): not ready, naming the store only
        store_dir = g.data_dir / "bundles"
        moved = g.data_dir / "bundles-away"
        store_dir.rename(moved)
        try:
            r = anon.get("/readyz")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["status"] == "unready" and body["failed"] == ["store"]
            assert body["checks"]["store"]["error"] == "FileNotFoundError"
            assert body["checks"]["catalog"]["ok"] and body["checks"]["runtime"]["ok"]
            assert str(g.data_dir) not in r.text
            assert anon.get("/healthz").status_code == 200  # liveness is not readiness
        finally:
            moved.rename(store_dir)
        assert anon.get("/readyz").status_code == 200  # back without a restart

        # request ids: a sane one is kept and echoed, anything else replaced
        r = anon.get("/healthz", headers={"X-Request-Id": "lb-4711.a"})
        assert r.headers["X-Request-Id"] == "lb-4711.a"
        r = anon.get("/no/such/page", headers={"X-Request-Id": "x" * 300})
        assert r.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-Id"])
        assert anon.get("/static/nbapps.css").headers.get("X-Request-Id")

        # some catalog and store work, then the metrics
        viewer = g.client("vic")
        assert viewer.get("/api/apps").status_code == 200
        assert viewer.get("/app/live-app/thumbnail").status_code == 200
        text = g.client("adam").get("/metrics").text
        assert (_metric(text, "process_cpu_seconds_total") or 0) > 0
        assert (_metric(text, "process_resident_memory_bytes") or 0) > 0
        assert "python_info{" in text
        catalog_calls = [line for line in text.splitlines()
                         if line.startswith("nbapps_catalog_call_duration_seconds_count{")]
        assert catalog_calls and sum(float(x.rsplit(" ", 1)[1]) for x in catalog_calls) >= 2
        assert (_metric(text, "nbapps_catalog_call_duration_seconds_count", op="ping") or 0) >= 3
        store_calls = [line for line in text.splitlines()
                       if line.startswith("nbapps_store_call_duration_seconds_count{")]
        assert store_calls, "no store call timed"
        anon.close()


def _start_json_server(data_dir: Path, db_url: str, env: dict[str, str]
                       ) -> tuple[subprocess.Popen[bytes], str, list[str]]:
    cmd = [sys.executable, "-m", "nbapps.server.app", "--port=0", f"--data-dir={data_dir}",
           f"--db-url={db_url}", "--NbappsServer.serve_apps=False", "--log-level=DEBUG",
           "--log-format=json", "--NbappsServer.check_workers=0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, **env})
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline().decode(errors="replace")
        if not line:
            break
        lines.append(line)
        if line.startswith("{") and "serving at" in line:
            url = json.loads(line)["url"]
            threading.Thread(target=lambda: lines.extend(
                raw.decode(errors="replace") for raw in iter(proc.stdout.readline, b"")),
                daemon=True).start()
            return proc, url.rstrip("/"), lines
    proc.kill()
    proc.wait(10)
    raise RuntimeError("server did not start:\n" + "".join(lines))


def test_json_logs_are_utc_and_carry_the_request_id(tmp_path):
    data_dir, db_url, _ = new_data_dir(tmp_path)
    # a local zone far from UTC: the JSON times must still be UTC
    proc, url, lines = _start_json_server(data_dir, db_url, {"TZ": "Asia/Tokyo"})
    try:
        rid = "join-me-0001"
        assert httpx.get(f"{url}/api/apps", headers={"X-Request-Id": rid},
                         timeout=30).status_code == 401
        made = httpx.get(f"{url}/login", timeout=30).headers["X-Request-Id"]
        deadline = time.monotonic() + 10
        while not any(made in line for line in list(lines)) and time.monotonic() < deadline:
            time.sleep(0.05)  # the drain thread reads the pipe
    finally:
        assert stop_process(proc) == 0
    records = [json.loads(line) for line in lines if line.startswith("{")]
    assert records and len(records) == len([x for x in lines if x.strip().startswith("{")])
    now = datetime.now(timezone.utc)
    for rec in records:
        assert rec["time"].endswith("Z"), rec
        stamp = datetime.strptime(rec["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc)
        assert abs((now - stamp).total_seconds()) < 300, (rec["time"], now)
    access = {rec.get("request_id"): rec for rec in records if rec["logger"] == "nbapps.access"}
    assert access[rid]["route"] == "api-apps" and access[rid]["status"] == 401
    assert access[made]["route"] == "login" and re.fullmatch(r"[0-9a-f]{32}", made)
    # other lines logged while handling the request carry its id too (the refusal's reason)
    inner = [rec for rec in records if rec.get("request_id") == rid
             and rec["logger"] != "nbapps.access"]
    assert inner and all("/api/apps" in rec["message"] for rec in inner), inner
    started = next(rec for rec in records if "serving at" in rec["message"])
    assert "request_id" not in started


@pytest.mark.kernel
def test_request_id_reaches_the_app_runner_log(tmp_path):
    from tests.test_app_browser import _approve_api, _submit, serving_gallery
    from tests.test_runner_fixtures import widget_app_notebook

    nb = widget_app_notebook()
    nb.metadata["nbapps"].update(title="Ids", description="d")
    nb.cells[-1].source += "\nfrom IPython.display import display\ndisplay('shown')"
    with serving_gallery(tmp_path) as g:
        sub = _submit(g, build_archive(tmp_path / "bundle", nb))
        _approve_api(g, sub["id"])
        auth = {"Authorization": f"Bearer {g.users['vic'].token}"}
        deadline = time.monotonic() + 180
        n = 0
        while True:  # 503 + Retry-After while the runner starts
            n += 1
            rid = f"runner-join-{n}"
            r = httpx.get(f"{g.url}/apps/{sub['slug']}/?n=4", timeout=120,
                          headers={**auth, "X-Request-Id": rid})
            if r.status_code == 200:
                break
            assert r.status_code == 503 and r.headers.get("retry-after"), r.status_code
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert r.headers["X-Request-Id"] == rid and "RESULT 4 x 0.5 16" in r.text
        r = httpx.get(f"{g.url}/readyz", timeout=30)
        assert r.status_code == 200 and r.json()["checks"]["runtime"]["ok"], r.text
        logs = g.data_dir / "runtime" / "logs"
        deadline = time.monotonic() + 10
        found = ""
        while not found and time.monotonic() < deadline:
            for path in logs.glob("*.log"):
                found = next((line for line in path.read_text(errors="replace").splitlines()
                              if f"request_id={rid}" in line), "")
                if found:
                    break
            time.sleep(0.1)  # the runner's logger writes from its own process
        assert found, "request id not in any runner log"
        assert f"/apps/{sub['slug']}/" in found and " 200 " in found
        assert "token" not in found


def test_time_calls_counts_outermost_calls_once():
    from prometheus_client import CollectorRegistry, Histogram

    from nbapps.server.api_meta import time_calls

    class Thing:
        def outer(self) -> int:
            return self.inner() + 1

        def inner(self) -> int:
            return 1

        def walk(self):
            yield 1

        @staticmethod
        def helper() -> int:
            return 2

    registry = CollectorRegistry()
    hist = Histogram("t_seconds", "t", ["op"], registry=registry)
    thing = Thing()
    time_calls(thing, hist)
    assert thing.outer() == 2 and thing.inner() == 1 and list(thing.walk()) == [1]
    assert thing.helper() == 2
    count = {op: registry.get_sample_value("t_seconds_count", {"op": op})
             for op in ("outer", "inner", "walk", "helper")}
    assert count == {"outer": 1.0, "inner": 1.0, "walk": None, "helper": None}
