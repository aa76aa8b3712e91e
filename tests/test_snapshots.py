"""Snapshots (issue 14 item 4) and variants' snapshots, with a real gallery, runs and kernels.

An app opting in (``metadata.nbapps.snapshot: true``) with one variant is approved: the gallery
queues snapshot runs of its defaults and of the variant. A viewer then gets the latest report at
once, with no app runner started for it; *Run live* opens the interactive app with the same
values. An app without snapshots opens live, as before.
"""
from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import Gallery, build_archive, catalog_of, seed_version
from tests.test_app_browser import _approve_api, _submit, serving_gallery
from tests.test_proxy import shown_text

pytestmark = [pytest.mark.kernel]

VIEWER = "vic"
RUNS_DEADLINE = 600.0  # check + 2 snapshot runs (+ their PDFs) on a loaded 2-core machine


def _notebook() -> Any:
    nb = make_notebook(
        params='n = 3  # how many\nlabel = "x"  # a label\nrate = 0.5  # a rate\n',
        widget="print(f'RESULT {n} {label} {rate} {n * n}')\nn",
        meta={"parameters": {"rate": {"min": 0, "max": 1}}, "snapshot": True,
              "variants": [{"name": "Big EU", "parameters": {"n": 5, "label": "EU",
                                                             "rate": 0.25}}]})
    return nb


def _wait_snapshots(g: Gallery, slug: str, count: int) -> list[Any]:
    deadline = time.monotonic() + RUNS_DEADLINE
    with catalog_of(g) as (cat, _store):
        while True:
            runs = cat.list_runs(slug, origin="snapshot")
            if len(runs) >= count and all(r.finished for r in runs):
                assert all(r.state == "passed" for r in runs), [r.to_dict() for r in runs]
                return runs
            assert time.monotonic() < deadline, [r.to_dict() for r in runs]
            time.sleep(0.5)  # polling the run queue (no event to wait on across threads)


def _runners(g: Gallery) -> float:
    """App runner processes in any state (each with its kernels), from the gallery's own
    metrics: this gallery serves only the snapshot app, so 0 means no kernel for it."""
    r = httpx.get(f"{g.url}/metrics", timeout=60,
                  headers={"Authorization": f"Bearer {g.users['adam'].token}"})
    assert r.status_code == 200, r.text[:200]
    found = re.findall(r'^nbapps_runners\{state="[a-z_]+"\} (\S+)$', r.text, re.M)
    assert found, "no runner metrics: is the runtime on?"
    return sum(float(v) for v in found)


def _report_text(b: Any, snapshot_page: str) -> tuple[str, httpx.Response]:
    src = re.search(r'<iframe id="snapshot-view"[^>]* src="([^"]+)"', snapshot_page)
    assert src, snapshot_page[:500]
    report = b.get(html.unescape(src.group(1)))
    assert report.status_code == 200, report.text[:300]
    return report.text, report


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gallery, str]]:
    base = tmp_path_factory.mktemp("snapshots")
    with serving_gallery(base) as g:
        sub = _submit(g, build_archive(base / "app", _notebook()))
        _approve_api(g, sub["id"])
        _wait_snapshots(g, sub["slug"], 2)
        yield g, sub["slug"]


def test_a_viewer_gets_the_snapshot_at_once_and_run_live_opens_the_app(gallery) -> None:
    g, slug = gallery
    with g.browser(VIEWER) as b:
        page = b.get(f"/app/{slug}")
        assert page.status_code == 200
        first = re.search(r'<a class="button" href="([^"]+)" data-snapshot>', page.text)
        assert first and html.unescape(first.group(1)) == f"/app/{slug}/snapshot", page.text
        variant = re.search(r'<a href="([^"]+)" data-variant="big-eu">Big EU</a>', page.text)
        assert variant and html.unescape(variant.group(1)) == \
            f"/app/{slug}/snapshot?variant=big-eu"

        snap = b.get(f"/app/{slug}/snapshot")
        assert snap.status_code == 200, snap.text[:300]
        assert "Snapshot of" in snap.text and "default values" in snap.text
        live = re.search(r'<a class="button" id="run-live" href="([^"]+)">Run live</a>',
                         snap.text)
        assert live and html.unescape(live.group(1)) == f"/app/{slug}/live"
        # the share link and the gallery's "open" show the snapshot first (no kernel)...
        opened = b.get(f"/app/{slug}/open", follow_redirects=False)
        assert opened.status_code == 302, opened.text[:300]
        assert opened.headers["location"].endswith(f"/app/{slug}/snapshot")
        # ...unless values are asked for: then the app must run with them
        asked = b.get(f"/app/{slug}/open?n=4", follow_redirects=False)
        assert asked.status_code == 200 and 'id="app-view"' in asked.text
        text, report = _report_text(b, snap.text)
        assert shown_text(text) == ["RESULT 3 x 0.5 9"]
        csp = report.headers["content-security-policy"]
        # app output: an opaque origin (no allow-same-origin) that may load nothing else
        assert re.search(r"(^|; )sandbox\b", csp) and "allow-same-origin" not in csp, csp
        assert "default-src 'none'" in csp and "connect-src 'self'" not in csp, csp
        assert report.headers["x-frame-options"] == "SAMEORIGIN"
        # all of that without an app runner: no kernel was started to show it
        assert _runners(g) == 0

        frame = b.get(html.unescape(live.group(1)))  # Run live: the app frame, then the app
        assert frame.status_code == 200
        src = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text).group(1)
    with httpx.Client(base_url=g.url, timeout=300) as c:
        app_page = c.get(html.unescape(src))
    assert app_page.status_code == 200
    assert shown_text(app_page.text) == ["RESULT 3 x 0.5 9"]
    assert _runners(g) >= 1


def test_a_variant_has_its_own_snapshot(gallery) -> None:
    g, slug = gallery
    with g.browser(VIEWER) as b:
        snap = b.get(f"/app/{slug}/snapshot?variant=big-eu")
        assert snap.status_code == 200
        assert "Big EU" in snap.text
        live = re.search(r'id="run-live" href="([^"]+)"', snap.text).group(1)
        assert html.unescape(live) == f"/app/{slug}/live?n=5&label=EU&rate=0.25"
        text, _ = _report_text(b, snap.text)
        assert shown_text(text) == ["RESULT 5 EU 0.25 25"]
        assert b.get(f"/app/{slug}/snapshot?variant=nope").status_code == 404


def test_snapshots_are_only_for_who_may_open_apps_and_only_snapshot_runs(gallery) -> None:
    g, slug = gallery
    with g.browser(VIEWER) as b:
        src = re.search(r'src="([^"]+/report\.html)"', b.get(f"/app/{slug}/snapshot").text)
        report_url = html.unescape(src.group(1))
        run_id = int(report_url.split("/")[-2])
    with httpx.Client(base_url=g.url, timeout=60, follow_redirects=False) as anonymous:
        assert anonymous.get(f"/app/{slug}/snapshot").status_code in (302, 401, 403)
        assert anonymous.get(report_url).status_code in (302, 401, 403)
    with catalog_of(g) as (cat, _store):
        other = cat.queue_runs(slug, [{"n": 4}], user=VIEWER)[0]  # an API run, not a snapshot
    with g.browser(VIEWER) as b:
        assert b.get(f"/app/{slug}/snapshot/{other.id}/report.html").status_code == 404
        assert b.get(f"/app/{slug}/snapshot/{run_id}/report.html").status_code == 200


def test_an_app_without_snapshots_opens_live(gallery) -> None:
    g, _slug = gallery
    with catalog_of(g) as (cat, store):
        plain = seed_version(cat, store, slug="plain", submitter="ana", title="Plain")
        cat.decide(plain.version.id, "rita", "approve", "ok")
        assert cat.list_runs("plain", origin="snapshot") == []  # did not opt in: none queued
    with g.browser(VIEWER) as b:
        r = b.get("/app/plain/snapshot", follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].endswith("/app/plain/live")
        page = b.get("/app/plain")
        assert page.status_code == 200 and "data-snapshot" not in page.text
