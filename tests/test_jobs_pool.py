"""Pieces of the check pool that need no kernel: claimer names, artifact references, sources."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import psutil

from nbapps.jobs import artifacts
from nbapps.jobs.pool import claimer_gone, worker_name
from nbapps.jobs.source import client_claim, derive_manifest, runner_manifest, source_ref
from nbapps.store import BundleStore, StoredSource


def test_a_claimer_is_gone_when_its_process_is():
    me = worker_name()
    host, pid, start, _pool = me.split("/")
    assert (host, int(pid)) == (socket.gethostname(), os.getpid())
    assert worker_name() != me  # one name per pool
    assert not claimer_gone(me)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    ended = int(done.stdout)
    if not psutil.pid_exists(ended):
        assert claimer_gone(f"{host}/{ended}/{start}/abc")
    assert claimer_gone(f"{host}/{os.getpid()}/{int(start) + 1}/abc")  # the pid was reused
    assert not claimer_gone(f"another-host/{ended}/1/abc")  # its lease tells
    assert not claimer_gone("garbage")


def test_thumbnail_references_name_blobs_only():
    sha = "ab" * 32
    assert artifacts.parse_thumbnail_ref(artifacts.thumbnail_ref(sha)) == sha
    for ref in (None, "thumbnail.png", f"blob:{sha}.svg", f"blob:{sha}.png/../x", "blob:x.png"):
        assert artifacts.parse_thumbnail_ref(ref) is None


def test_the_manifest_is_derived_from_the_notebook_only():
    import nbformat

    from tests.nbfactory import make_notebook

    nb = make_notebook(meta={"title": " Sales ", "author": "Ada", "files": ["d.csv"],
                             "thumbnail": "missing.png", "timeout": 30,
                             "test_parameters": [{"n": 5}]})
    files = {"app.ipynb": nbformat.writes(nb).encode(), "d.csv": b"1\n"}
    stored = StoredSource("cd" * 32, BundleStore.source_key("cd" * 32), 123)
    claim = client_claim({"title": "Lie", "validation": {"ok": True}, "parameters": [],
                          "files": [{"path": "x"}], "source_name": "sales.ipynb"})
    assert claim == {"validation": {"ok": True}, "source_name": "sales.ipynb"}
    m = derive_manifest(files, stored, claim=claim)
    assert (m["title"], m["author"], m["timeout"], m["test_parameters"]) == \
        ("Sales", "Ada", 30.0, [{"n": 5}])
    assert [p["name"] for p in m["parameters"]] == ["n", "label"]
    assert m["thumbnail_source"] is None  # declared but not in the source
    assert [f["path"] for f in m["files"]] == ["app.ipynb", "d.csv"]
    assert m["client_claim"] == claim and m["kernel"]["name"] == "python3"
    broken = derive_manifest({"app.ipynb": b"{not json"}, stored)
    assert broken["parameters"] == [] and broken["title"] == ""

    class V:
        sha256 = "ef" * 32
        store_key = BundleStore.key_for("ef" * 32)
        manifest = m

    assert source_ref(V) == (stored.sha256, stored.key)
    assert [p["name"] for p in runner_manifest(V, stored.sha256)["parameters"]] == \
        ["n", "label"]
    V.manifest = {"legacy": True, "client_claim": {"parameters": [{"name": "evil"}]}}
    assert source_ref(V) == (V.sha256, V.store_key)
    assert "parameters" not in runner_manifest(V, V.sha256)  # the runner reads the notebook
