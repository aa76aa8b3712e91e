"""Crash safety: SIGKILL in the middle of a submission leaves nothing half-visible."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from nbapps.catalog import open_catalog
from nbapps.store import BundleStore
from tests.catalog_helpers import add_users, sha

CHILD = textwrap.dedent("""
    import sys, time
    from nbapps.catalog import open_catalog
    from nbapps.catalog import versions
    from nbapps.store import BundleStore

    url, store_url, digest = sys.argv[1:4]
    cat = open_catalog(url)
    store = BundleStore(store_url)
    key = store.put(digest, b"bundle bytes")
    original = versions.append_event

    def append_then_hang(*args, **kwargs):
        row = original(*args, **kwargs)   # version row and audit row are flushed, not committed
        print("IN-TRANSACTION", flush=True)
        time.sleep(600)
        return row

    versions.append_event = append_then_hang
    cat.submit(slug="crashy", title="Crashy", description="d", tags=["x"], sha256=digest,
               manifest={}, store_key=key, submitter="ana")
    print("COMMITTED", flush=True)
""")


def test_sigkill_during_submit_leaves_no_trace(catalog_url, tmp_path: Path):
    cat = open_catalog(catalog_url)
    add_users(cat, ana="analyst", rita="reviewer")
    events_before = len(cat.list_audit(limit=1000))
    cat.close()
    digest = sha("crashy")
    store_url = f"file://{tmp_path / 'bundles'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, catalog_url, store_url, digest],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip() == "IN-TRANSACTION" or not line:
                break
        assert line.strip() == "IN-TRANSACTION", proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    cat = open_catalog(catalog_url)  # a clean start on the same database
    try:
        assert cat.list_apps(live_only=False).total == 0
        assert cat.list_versions() == [] and cat.list_queue() == []
        assert len(cat.list_audit(limit=1000)) == events_before
        # the bundle may stay in the store (written first, by hash): harmless and reusable
        assert BundleStore(store_url).get(digest) == b"bundle bytes"
        again = cat.submit(slug="crashy", title="Crashy", description="d", tags=["x"],
                           sha256=digest, manifest={}, store_key=BundleStore.key_for(digest),
                           submitter="ana")
        assert again.created and again.version.number == 1
        assert cat.decide(again.version.id, "rita", "approve").is_live
    finally:
        cat.close()
