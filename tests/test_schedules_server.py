"""Schedules end to end in a real gallery with real kernels: the reviewer sees them, they fire
within the test (seconds cron, tick 0.5 s), a failing run makes the app broken (badge on its
card and page, findings for its analyst and reviewers, not for a viewer) and notifies a real
webhook; a fixed version's passing run clears it; an admin pauses; a restart between two
firings fires once."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import nbformat
import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import (
    PNG_1x1,
    ThreadServer,
    archive_of,
    catalog_of,
    new_data_dir,
    thread_gallery,
)

BASE_ARGS = ["--NbappsServer.check_workers=0", "--NbappsServer.check_unchecked_versions=False",
             "--NbappsServer.run_pdf=False", "--NbappsServer.run_workers=1",
             "--NbappsServer.schedule_tick=0.5", "--NbappsServer.schedule_allow_seconds=True",
             "--NbappsServer.schedule_retry_base=600"]
CONTRACT = [{"name": "n", "type": "int", "default": 3, "help": "how many"},
            {"name": "label", "type": "str", "default": "x", "help": "a label",
             "choices": ["x", "y"]}]
REFRESH = {"name": "refresh", "cron": "*/2 * * * * *", "parameters": {"label": "y"}}


def seed(cat: Any, store: Any, slug: str, extra: list[str], schedules: list[dict],
         *, salt: str = "", approve: bool = True) -> int:
    """Store a source archive and record it as a version whose manifest declares
    ``schedules`` (as the gallery's check derives it), approved by rita."""
    nb = make_notebook(extra=extra, meta={"title": slug.title(), "schedules": schedules})
    files = {"app.ipynb": nbformat.writes(nb).encode(), "thumbnail.png": PNG_1x1}
    manifest = {"notebook": "app.ipynb", "title": slug.title(), "description": "d",
                "tags": ["test"], "thumbnail": "thumbnail.png", "parameters": CONTRACT,
                "schedules": schedules, "salt": salt,
                "files": {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}}
    files["manifest.json"] = json.dumps(manifest).encode()
    data = archive_of(files)
    sha = hashlib.sha256(data).hexdigest()
    sub = cat.submit(slug=slug, title=slug.title(), description="d", tags=("test",),
                     sha256=sha, manifest=manifest, store_key=store.put(sha, data),
                     submitter="ana", size=len(data))
    if approve:
        cat.decide(sub.version.id, "rita", "approve", "ok")
    return int(sub.version.id)


def poll(what: str, check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def scheduled_runs(g: Any, slug: str) -> list[dict]:
    with g.client("adam") as c:
        return list(c.get(f"/api/apps/{slug}/runs").json()["items"])


def schedules_of(g: Any, slug: str, who: str = "ana") -> dict:
    with g.client(who) as c:
        r = c.get(f"/api/apps/{slug}/schedules")
        assert r.status_code == 200, r.text
        return dict(r.json())


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             type("H", (_Hook,), {"received": received}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/notify", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.kernel
@pytest.mark.slow
def test_a_failing_schedule_breaks_the_app_until_a_fixed_version_passes(tmp_path, webhook):
    url, received = webhook
    args = [*BASE_ARGS, f"--NbappsServer.schedule_webhook_url={url}"]
    with thread_gallery(tmp_path, args=args) as g:
        failing = ["if label == 'y':\n    raise ValueError('no data for ' + label)"]
        with catalog_of(g) as (cat, store):
            v1 = seed(cat, store, "sales", failing, [REFRESH], approve=False)
        # the reviewer sees what the version will run, and when, before approving it
        with g.browser("rita") as rita:
            page = rita.get(f"/submissions/{v1}").text
            section = page[page.index('id="schedules"'):][:3000]
            assert 'data-schedule="refresh"' in section and "*/2 * * * * *" in section
            assert "label=&#34;y&#34;" in section or 'label="y"' in section
            assert section.count("<time") >= 3  # the next three times
        with catalog_of(g) as (cat, _store):
            cat.decide(v1, "rita", "approve", "ok")

        broken = poll("the app to be broken", lambda: (s := schedules_of(g, "sales"))["broken"]
                      and s)
        assert broken["findings"][0]["code"] == "NBA070"
        assert "no data for y" in json.dumps(broken["findings"])
        runs = scheduled_runs(g, "sales")
        assert runs and all(r["origin"] == "schedule" and r["owner"] is None for r in runs)
        assert runs[-1]["parameters"] == {"n": 3, "label": "y"} or \
            runs[-1]["parameters"] == {"label": "y"}
        hook = poll("the webhook", lambda: [b for b in received
                                            if b["event"] == "schedule.failed"])
        assert hook[0]["app"] == "sales" and hook[0]["schedule"] == "refresh"
        assert hook[0]["state"] == "failed" and hook[0]["findings"][0]["code"] == "NBA070"
        assert hook[0]["link"].endswith("/app/sales")

        # the badge for everyone; the findings for the analyst and reviewers only
        with g.browser("vic") as vic:
            assert "badge-broken" in vic.get("/").text
            page = vic.get("/app/sales").text
            assert "badge-broken" in page and "no data for y" not in page
            assert "broken-findings" not in page
            assert schedules_of(g, "sales", who="vic")["findings"] == []
        for who in ("ana", "rita"):
            with g.browser(who) as b:
                page = b.get("/app/sales").text
                assert "badge-broken" in page and "no data for y" in page

        # a fixed version keeps the schedule: the app is broken until its run passes
        with catalog_of(g) as (cat, store):
            seed(cat, store, "sales", ["if label == 'z':\n    raise ValueError('z')"], [REFRESH],
                 salt="v2")
        fixed = poll("the app to recover", lambda: not (s := schedules_of(g, "sales"))["broken"]
                     and s)
        report = fixed["latest_report"]
        assert report and report["url"].endswith(f"/api/runs/{report['run_id']}/report.html")
        poll("the recovery notice",
             lambda: [b for b in received if b["event"] == "schedule.recovered"])
        with g.browser("vic") as vic:
            page = vic.get("/app/sales").text
            assert "badge-broken" not in page and "Latest scheduled report" in page
            assert f"/api/runs/{report['run_id']}/report.html" in page
            assert "badge-broken" not in vic.get("/").text
        with g.client("vic") as c:
            assert c.get(report["url"]).status_code == 200

        # pausing: admins only, audited; no firing while paused
        with g.client("rita") as c:
            r = c.patch("/api/apps/sales/schedules/refresh", json={"paused": True})
            assert r.status_code == 403, r.text
        with g.browser("adam") as adam:
            page = adam.get("/app/sales").text
            assert 'action="/app/sales/schedules/refresh"' in page  # the admin's button
            r = adam.post_form("/app/sales/schedules/refresh", {"paused": "1"})
            assert r.status_code == 302, r.text
            assert schedules_of(g, "sales")["schedules"][0]["paused"] is True
            assert "schedule-paused" in adam.get("/app/sales").text
            r = adam.api("PATCH", "/api/apps/sales/schedules/refresh", json={"paused": True})
            assert r.status_code == 200 and r.json()["paused"] is True, r.text
            # XSRF like every API call from a browser session
            assert adam.api("PATCH", "/api/apps/sales/schedules/refresh", xsrf=False,
                            json={"paused": False}).status_code == 403
        with catalog_of(g) as (cat, store):
            seed(cat, store, "pulse", [], [{"name": "beat", "cron": "*/2 * * * * *"}])
        poll("the paused schedule's last run to settle",
             lambda: schedules_of(g, "sales")["schedules"][0]["run_state"]
             not in ("claimed", "queued"))
        before = len(scheduled_runs(g, "sales"))
        # a second firing of another app comes after its first run was read: ticks went on
        poll("two firings of another app", lambda: len(scheduled_runs(g, "pulse")) >= 2)
        assert len(scheduled_runs(g, "sales")) == before
        with g.client("adam") as c:
            actions = [e["action"] for e in c.get("/api/audit").json()["items"]]
        assert "schedule.pause" in actions and "app.broken" in actions
        assert "app.recovered" in actions


def test_a_restart_between_two_firings_fires_once(tmp_path):
    """No kernels: runs are finished through the catalog's worker protocol (no run workers),
    so what is tested is the scheduler's state across a restart."""
    from nbapps.catalog import open_catalog
    from nbapps.store import open_store

    data_dir, db_url, _users = new_data_dir(tmp_path)
    args = [a for a in BASE_ARGS if "run_workers" not in a] + ["--NbappsServer.run_workers=0"]
    cat = open_catalog(db_url)
    try:
        store = open_store(None, data_dir)
        # daily, 11-12 h from now: its next time never comes during the test, whatever the
        # hour (a fixed 06:00 failed between 05:00 and 06:00 UTC)
        hour = (datetime.now(timezone.utc).hour + 12) % 24
        seed(cat, store, "daily", [], [{"name": "morning", "cron": f"0 {hour} * * *"}])
        [row] = cat.list_schedules("daily")
        # its time came while no gallery ran
        with cat._write() as s:  # noqa: SLF001 - test setup on the real table
            from sqlalchemy import update

            from nbapps.catalog.models import ScheduleRow
            s.execute(update(ScheduleRow).where(ScheduleRow.id == row.id).values(
                next_due_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
        server = ThreadServer(data_dir, db_url, args)
        try:
            server.start()
            [run] = poll("the missed firing", lambda: cat.list_runs("daily", origin="schedule"))
            job = poll("the run to claim", lambda: cat.claim_job("test", kinds=("run",)))
            assert job.id == run.id
            cat.finish_job(job.id, "test", job.attempts, state="passed", result={})
            poll("the outcome read", lambda: cat.list_schedules("daily")[0].run_state
                 == "passed")
        finally:
            server.stop()
        # between the two starts: another app's schedule, the proof of a tick after the restart
        seed(cat, store, "pulse", [], [{"name": "beat", "cron": "*/2 * * * * *"}])
        server = ThreadServer(data_dir, db_url, args)
        try:
            server.start()
            poll("a tick of the new gallery", lambda: cat.list_runs("pulse", origin="schedule"))
            assert len(cat.list_runs("daily", origin="schedule")) == 1
        finally:
            server.stop()
        [row] = cat.list_schedules("daily")
        assert row.next_due_at > datetime.now(timezone.utc) + timedelta(hours=1)
        assert row.run_state == "passed" and row.last_passed_run_id == run.id
    finally:
        cat.close()
