"""Usage (catalog rows + app page chart) and Prometheus metrics from the proxy's observe callback.

A real gallery with a real runner supervisor (``serve_apps=True``, no app opened, so no runner
or kernel is started); the proxy's observe callback is called on the server's own event loop.
"""
from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime, timezone

import pytest

from nbapps.server.usage import UsageRecorder
from tests.server_harness import Gallery, ThreadServer, catalog_of, new_data_dir, seed_version

SLUG = "usage-app"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data_dir, url, users = new_data_dir(tmp_path_factory.mktemp("usage"))
    server = ThreadServer(data_dir, url)
    server.server.serve_apps = True  # the harness passes serve_apps=False on its command line
    contexts = []
    build = server.server.build_context

    def capture():  # keep the server's context to call its observe callback
        contexts.append(build())
        return contexts[-1]

    server.server.build_context = capture
    try:
        base = server.start()
        g = Gallery(url=base.rstrip("/"), data_dir=data_dir, db_url=url, users=users,
                    server=server)
        with catalog_of(g) as (cat, store):
            v = seed_version(cat, store, slug=SLUG, submitter="ana", title="Usage app")
            cat.decide(v.version.id, "rob", "approve", "ok")
        yield g, contexts[0]
    finally:
        server.stop()


def on_loop(g: Gallery, fn, timeout: float = 30):
    """Run ``fn()`` (sync or a coroutine function) on the server's event loop."""
    async def call():
        result = fn()
        return await result if asyncio.iscoroutine(result) else result
    return asyncio.run_coroutine_threadsafe(call(), g.server.server.loop).result(timeout)


def test_observe_records_usage_and_chart(served):
    g, ctx = served
    assert ctx.runtime is not None  # the real supervisor
    recorder = UsageRecorder(ctx, flush_interval=0.05)

    def burst():
        for seconds in (0.1, 0.12, 0.14):
            recorder(SLUG, "page", 200, seconds)
        recorder(SLUG, "custom", 200, 0.2)
        recorder(SLUG, "page", 502, 1.5)       # a view and an error, no render time
        recorder(SLUG, "page", 503, 0.002)     # "starting…" page: retried, not a view
        recorder(SLUG, "custom", 400, 0.003)   # bad parameters: not a view
        recorder(SLUG, "page", 302, 0.001)     # login redirect: not a view
        recorder(SLUG, "asset", 200, 0.01)     # not a view
        recorder(SLUG, "ws", 101, 30.0)        # not a view
    on_loop(g, burst)
    today = datetime.now(timezone.utc).date()

    def row():
        with catalog_of(g) as (cat, _):
            return cat.usage_series(SLUG, days=1, today=today)[0]
    deadline = time.monotonic() + 10
    while row().views < 5 and time.monotonic() < deadline:  # the batched write, off the loop
        time.sleep(0.05)
    point = row()
    assert (point.views, point.errors, point.render_count) == (5, 1, 4)
    assert point.render_ms_sum == pytest.approx(560.0)

    on_loop(g, lambda: recorder(SLUG, "page", 200, 0.16))
    on_loop(g, recorder.flush)
    assert row().views == 6 and row().render_count == 5

    with g.client("vic") as c:
        page = c.get(f"/app/{SLUG}")
    assert page.status_code == 200, page.text
    assert re.search(r'data-usage="views">6<', page.text)
    assert re.search(r'data-usage="errors">1<', page.text)
    # no render time on the page: the proxy's milliseconds are not what a person waits
    assert "median-render-ms" not in page.text and 'data-usage="empty"' not in page.text
    assert page.text.count('class="usage-bar') == 30
    assert f"{today.isoformat()}: 6 views, 1 errors" in page.text
    bars = re.findall(r'<rect x="(\d+)" y="(\d+)" width="8" height="(\d+)"', page.text)
    assert len(bars) == 30 and int(bars[-1][2]) == 46 and all(b[2] == "0" for b in bars[:-1])


def test_metrics_exposed(served):
    g, ctx = served
    on_loop(g, lambda: ctx.metrics.observe_app(SLUG, "custom", 504, 2.0))
    with g.client("adam") as c:
        r = c.get("/metrics")
        c.get("/")  # request latency by route
        again = c.get("/metrics").text
    assert r.status_code == 200
    text = r.text
    for name in ("nbapps_app_render_seconds_bucket", "nbapps_proxy_errors_total",
                 "nbapps_runners", "nbapps_live_kernels", "nbapps_kernels_in_use",
                 "nbapps_runners_rss_bytes", "nbapps_runner_events_total"):
        assert f"\n{name}" in text or f"# TYPE {name}" in text, name
    assert re.search(r'nbapps_runners\{state="ready"\} 0\.0', text)
    assert re.search(r'nbapps_proxy_errors_total\{kind="custom",slug="usage-app",'
                     r'status="504"\} 1\.0', text)
    assert re.search(r'nbapps_runner_events_total\{event="starts"\} 0\.0', text)
    assert "nbapps_http_request_duration_seconds_bucket" in again
    with g.client("vic") as c:
        assert c.get("/metrics").status_code == 403


def test_proxy_mounted_with_observer(served):
    g, _ = served
    with g.client() as c:  # anonymous: the proxy (not the placeholder) sends it to log in
        r = c.get(f"/apps/{SLUG}/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"].startswith("/login?next=")


def test_views_still_in_memory_are_written_at_shutdown(tmp_path):
    """Views are batched (one catalog write per interval): stopping the server writes the last
    batch instead of dropping it."""
    data_dir, url, _ = new_data_dir(tmp_path)
    server = ThreadServer(data_dir, url)
    server.server.serve_apps = True
    try:
        g = Gallery(url=server.start().rstrip("/"), data_dir=data_dir, db_url=url, server=server)
        with catalog_of(g) as (cat, store):
            v = seed_version(cat, store, slug=SLUG, submitter="ana", title="Usage app")
            cat.decide(v.version.id, "rob", "approve", "ok")
        recorder = server.server.usage
        assert recorder is not None
        recorder.flush_interval = 3600.0  # nothing would be written before shutdown

        def views():
            for _ in range(3):
                recorder(SLUG, "page", 200, 0.1)
        on_loop(g, views)
    finally:
        server.stop()
    with catalog_of(g) as (cat, _):
        point = cat.usage_series(SLUG, days=1, today=datetime.now(timezone.utc).date())[0]
    assert (point.views, point.render_count) == (3, 3)
