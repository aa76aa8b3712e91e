"""Runs through the HTTP API with real kernels and a real gallery (nbapps.server.api_runs).

One gallery with two run workers serves most tests; a second data dir (no run workers, then a
restart with one) covers the full queue, cancel rights, a restart with queued runs, and a run
past its time limit whose process tree must be gone afterwards.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import catalog_of, seed_version, thread_gallery

pytestmark = pytest.mark.kernel

BASE_ARGS = ["--NbappsServer.check_workers=0", "--NbappsServer.check_unchecked_versions=False",
             "--NbappsServer.run_pdf=False"]
RECORDING = ("import nbapps\n"
             "nbapps.record('total', n * 2)\n"
             "nbapps.record('label', label)\n"
             "with open('summary.csv', 'w') as f:\n"
             "    f.write(f'n,label\\n{n},{label}\\n')\n")


def app_notebook(extra: list[str], **meta) -> nbformat.NotebookNode:
    return make_notebook(extra=extra, meta={"title": "Sales report", **meta})


def publish(g, slug: str, nb: nbformat.NotebookNode, *, approve: bool = True) -> int:
    with catalog_of(g) as (cat, store):
        sub = seed_version(cat, store, slug=slug, submitter="ana", title=slug.title(), nb=nb,
                           salt=slug)
        if approve:
            cat.decide(sub.version.id, "rita", "approve", "ok")
        return sub.version.id


def wait_run(c, run_id: int, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = c.get(f"/api/runs/{run_id}").json()
        if run["state"] not in ("queued", "running"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['state']}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    with thread_gallery(folder, args=[*BASE_ARGS, "--NbappsServer.run_workers=2"]) as g:
        publish(g, "sales", app_notebook([RECORDING], outputs=["summary.csv", "missing.txt"]))
        publish(g, "broken", app_notebook(["raise ValueError('no data for ' + label)"]))
        publish(g, "draft", app_notebook([]), approve=False)
        yield g


def test_a_viewer_runs_an_app_and_gets_every_output(gallery):
    with gallery.client("vic") as c:
        r = c.post("/api/apps/sales/runs", json={"parameters": {"n": "5", "label": "y"}})
        assert r.status_code == 202, r.text
        (queued,) = r.json()["runs"]
        assert (queued["owner"], queued["parameters"], queued["origin"]) == \
            ("vic", {"n": 5, "label": "y"}, "api")
        run = wait_run(c, queued["id"])
        assert run["state"] == "passed", run
        assert run["result"] == {"total": 10, "label": "y"}
        assert run["started_at"] and run["finished_at"] and run["seconds"] > 0
        assert {f["code"] for f in run["findings"]} == {"NBA374"}  # missing.txt: a warning
        assert "missing.txt" in run["findings"][0]["message"]
        assert set(run["artifacts"]) == {"executed.ipynb", "report.html", "result.json",
                                         "summary.csv"}
        # run_pdf=False: no PDF offered at all
        assert "report.pdf" not in run["artifact_urls"] and run["on_request"] == []
        assert c.get(f"/api/runs/{run['id']}/report.pdf").json()["error"] == "NBA375"
        assert run["details"]["confined"] in (True, False)

        report = c.get(run["artifact_urls"]["report.html"])
        assert report.status_code == 200
        assert report.headers["content-type"].startswith("text/html")
        csp = report.headers["content-security-policy"]
        assert "sandbox" in csp and "allow-same-origin" not in csp
        assert report.headers["content-disposition"].startswith("inline")
        html = report.text
        head = html[html.index("nbapps-report-head\">"):][:300]
        assert "<h1>Sales</h1>" in head and "<code>label = 'y'</code>" in head, head
        assert "n = 5  # how many" not in html and "nbapps.record" not in html  # no code
        assert 'type="application/vnd.jupyter.widget-state+json"' in html
        assert "/static/widgets/embed.js" in html
        download = c.get(run["artifact_urls"]["report.html"], params={"download": "1"})
        assert download.headers["content-disposition"] == 'attachment; filename="report.html"'

        csv = c.get(run["artifact_urls"]["summary.csv"])
        assert csv.text == "n,label\n5,y\n"
        assert csv.headers["content-disposition"] == 'attachment; filename="summary.csv"'
        assert csv.headers["content-type"].startswith("text/csv")
        assert c.get(run["artifact_urls"]["result.json"]).json() == run["result"]
        executed = c.get(run["artifact_urls"]["executed.ipynb"])
        assert executed.headers["content-type"] == "application/x-ipynb+json"
        nb = nbformat.reads(executed.text, as_version=4)
        injected = [cell for cell in nb.cells
                    if "injected-parameters" in cell.metadata.get("tags", [])]
        assert "n = 5" in injected[0].source
        missing = c.get(f"/api/runs/{run['id']}/nothing.txt")
        assert (missing.status_code, missing.json()["error"]) == (404, "NBA375")

        listed = c.get("/api/apps/sales/runs").json()["items"]
        assert listed[0]["id"] == run["id"] and listed[0]["owner"] == "vic"
    with gallery.client("adam") as admin:
        events = admin.get("/api/audit", params={"action": "run.queue"}).json()["items"]
        assert any(e["details"]["run_id"] == run["id"] and e["actor"] == "vic" for e in events)


def test_bad_parameters_are_refused_before_anything_is_queued(gallery):
    with gallery.client("vic") as c:
        before = len(c.get("/api/apps/sales/runs").json()["items"])
        r = c.post("/api/apps/sales/runs",
                   json={"batch": [{"n": "many"}, {"nope": 1, "label": "z"}]})
        assert r.status_code == 400
        body = r.json()
        assert {(d["set"], d["name"], d["code"]) for d in body["details"]} == \
            {(0, "n", "NBA102"), (1, "nope", "NBA101"), (1, "label", "NBA103")}
        assert len(c.get("/api/apps/sales/runs").json()["items"]) == before
        assert c.post("/api/apps/sales/runs", json={"params": {}}).json()["error"] == "NBA378"
        assert c.post("/api/apps/sales/runs", json={"version": 9}).status_code == 404
        assert c.post("/api/apps/nothing/runs", json={}).status_code == 404
        # a submission nobody approved yet: invisible to a viewer, not runnable by its author
        assert c.get("/api/apps/draft/runs").status_code == 404
    with gallery.client("ana") as author:
        r = author.post("/api/apps/draft/runs", json={})
        assert (r.status_code, r.json()["error"]) == (409, "NBA371")
    with gallery.client() as anonymous:
        assert anonymous.get("/api/apps/sales/runs").status_code == 401


def test_a_failing_notebook_gives_a_failed_run_with_its_finding(gallery):
    with gallery.client("ana") as c:
        (queued,) = c.post("/api/apps/broken/runs", json={"parameters": {}}).json()["runs"]
        run = wait_run(c, queued["id"])
    assert run["state"] == "failed"
    (finding,) = [f for f in run["findings"] if f["severity"] == "error"]
    assert finding["code"] == "NBA070" and "no data for x" in finding["message"]
    assert "executed.ipynb" in run["artifacts"]


def test_a_batch_of_three_runs_in_parallel(gallery):
    with gallery.client("vic") as c:
        r = c.post("/api/apps/sales/runs", json={"batch": [{"n": i} for i in (1, 2, 3)]})
        assert r.status_code == 202
        body = r.json()
        assert body["batch"] and {q["batch"] for q in body["runs"]} == {body["batch"]}
        runs = [wait_run(c, q["id"]) for q in body["runs"]]
        listed = c.get("/api/apps/sales/runs", params={"batch": body["batch"]}).json()
    assert [r["state"] for r in runs] == ["passed"] * 3
    assert [r["result"]["total"] for r in runs] == [2, 4, 6]
    assert len(listed["items"]) == 3
    # two workers: some runs overlapped in time
    spans = sorted((r["started_at"], r["finished_at"]) for r in runs)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))


def _leftovers(data_dir: Path, name: str | None = None) -> list[psutil.Process]:
    """Processes of the runs of this data dir (only those of run folder ``name`` if given)."""
    from nbapps.runs.worker import RunSettings

    roots = [str((data_dir / "runs").resolve()),
             *[str(p) for p in RunSettings(data_dir=data_dir).temp_folders()]]
    prefix = RunSettings(data_dir=data_dir).temp_prefix
    found = []
    for proc in psutil.process_iter(["uids", "cwd", "cmdline"]):
        try:
            cwd = proc.info.get("cwd") or ""
            cmd = " ".join(proc.info.get("cmdline") or [])
        except psutil.Error:
            continue
        if proc.pid == os.getpid():
            continue
        if name is not None and name not in cwd and name not in cmd:
            continue
        if any(cwd.startswith(r) for r in roots) or prefix in cmd or prefix in cwd:
            found.append(proc)
    return found


def test_queue_limit_cancel_restart_and_timeout(tmp_path):
    slow = app_notebook(["import time\ntime.sleep(120)"])
    args = [*BASE_ARGS, "--NbappsServer.run_workers=0", "--NbappsServer.run_queue_max=2"]
    with thread_gallery(tmp_path, args=args) as g:
        publish(g, "sales", app_notebook([RECORDING]))
        publish(g, "slow", slow)
        with g.client("vic") as c, g.client("ana") as other, g.client("adam") as admin:
            full = c.post("/api/apps/sales/runs", json={"batch": [{}, {}, {}]})
            assert (full.status_code, full.json()["error"]) == (429, "NBA370")
            assert full.headers["retry-after"] == "60"
            kept, = c.post("/api/apps/sales/runs", json={"parameters": {"n": 4}}).json()["runs"]
            doomed, = c.post("/api/apps/slow/runs", json={}).json()["runs"]
            assert (kept["queue_position"], doomed["queue_position"]) == (1, 2)
            again = c.post("/api/apps/sales/runs", json={})
            assert again.status_code == 429
            assert "2 run(s) waiting, at most 2" in again.json()["message"]
            refused = other.delete(f"/api/runs/{kept['id']}")
            assert (refused.status_code, refused.json()["error"]) == (403, "NBA376")
            cancelled = c.post(f"/api/runs/{doomed['id']}/cancel").json()
            assert cancelled["state"] == "cancelled"
            twice = admin.delete(f"/api/runs/{doomed['id']}")
            assert (twice.status_code, twice.json()["error"]) == (409, "NBA377")
            slow_run, = c.post("/api/apps/slow/runs", json={}).json()["runs"]
    # restart with a worker and a short time limit: the queued runs run now
    args = [*BASE_ARGS, "--NbappsServer.run_workers=1", "--NbappsServer.run_timeout=6"]
    with thread_gallery(tmp_path, g.db_url, users=False, args=args) as g2:
        g2.users = g.users
        with g2.client("vic") as c:
            done = wait_run(c, kept["id"])
            assert done["state"] == "passed" and done["result"]["total"] == 8
            timed_out = wait_run(c, slow_run["id"], timeout=90)
            assert c.get(f"/api/runs/{doomed['id']}").json()["state"] == "cancelled"
        assert timed_out["state"] == "failed"
        assert {f["code"] for f in timed_out["findings"]} & {"NBA072", "NBA372"}
        folder = timed_out["details"]["folder"]
        deadline = time.monotonic() + 15
        while _leftovers(g2.data_dir, folder) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _leftovers(g2.data_dir, folder) == []
        assert not psutil.pid_exists(timed_out["details"]["pid"]) or \
            psutil.Process(timed_out["details"]["pid"]).status() == psutil.STATUS_ZOMBIE
        assert [p.name for p in (g2.data_dir / "runs").iterdir()
                if not p.name.startswith("spare-")] == []
    # stopped: no spare program or folder is left either
    assert _leftovers(g2.data_dir) == [] and not list((g2.data_dir / "runs").iterdir())


def test_one_viewer_cannot_fill_the_run_queue(tmp_path):
    """``run_user_max`` bounds each person's queued and running runs (NBA383, 429 with
    Retry-After); another viewer is still served."""
    args = [*BASE_ARGS, "--NbappsServer.run_workers=0", "--NbappsServer.run_user_max=2"]
    with thread_gallery(tmp_path, args=args) as g:
        publish(g, "sales", app_notebook([RECORDING]))
        with g.client("vic") as c, g.client("ana") as other:
            batch = c.post("/api/apps/sales/runs", json={"batch": [{}, {}, {}]})
            assert (batch.status_code, batch.json()["error"]) == (429, "NBA383")
            assert batch.headers["retry-after"] == "30"
            assert c.post("/api/apps/sales/runs", json={"batch": [{}, {}]}).status_code == 202
            more = c.post("/api/apps/sales/runs", json={})
            assert (more.status_code, more.json()["error"]) == (429, "NBA383")
            assert "2 run(s) queued or running; at most 2" in more.json()["message"]
            assert other.post("/api/apps/sales/runs", json={}).status_code == 202


def test_record_checks_values_outside_a_kernel():
    import nbapps

    nbapps.record("ok", {"a": [1, 2.5, None, True, "x"]})
    assert nbapps.record.__module__ == "nbapps.record"
    with pytest.raises(TypeError):
        nbapps.record("bad", {1, 2})
    with pytest.raises(TypeError):
        nbapps.record("nan", float("nan"))
    with pytest.raises(ValueError):
        nbapps.record("", 1)


def test_report_view_keeps_only_what_the_app_shows():
    from nbapps.record import MIME
    from nbapps.runs.report import app_view

    nb = make_notebook(extra=["print('hidden cell output')"])
    nb.cells[-1].outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "shown"})]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="hidden cell output")]
    nb.cells[-1].outputs.append(nbformat.v4.new_output(
        "display_data", data={MIME: {"name": "x", "value": 1}}))
    view, state = app_view(nb)
    assert [c.cell_type for c in view.cells] == ["code"]  # only the widget cell
    assert json.dumps(view.cells[0].outputs).count("shown") == 1 and MIME not in json.dumps(
        view.cells[0].outputs)
    assert state == ""


def test_the_cli_creates_waits_downloads_lists_shows_and_cancels(gallery, tmp_path,
                                                                 monkeypatch, capsys):
    from nbapps.cli.main import main

    monkeypatch.setenv("NBAPPS_GALLERY", gallery.url)
    monkeypatch.setenv("NBAPPS_TOKEN", gallery.users["vic"].token)
    monkeypatch.setenv("NBAPPS_CONFIG", str(tmp_path / "none.toml"))
    out = tmp_path / "out"
    assert main(["runs", "create", "sales", "-p", "n", "6", "-p", "label", "y",
                 "--download", str(out)]) == 0
    text = capsys.readouterr().out
    assert "passed" in text and '"total": 12' in text
    assert json.loads((out / "result.json").read_text()) == {"total": 12, "label": "y"}
    assert (out / "summary.csv").read_text() == "n,label\n6,y\n"
    assert "<h1>Sales</h1>" in (out / "report.html").read_text()
    assert nbformat.read(str(out / "executed.ipynb"), as_version=4).cells

    batch = tmp_path / "batch.json"
    batch.write_text(json.dumps([{"n": 1}, {"n": 2}]))
    assert main(["runs", "create", "sales", "--batch", str(batch), "-p", "label", "y",
                 "--wait", "--format", "json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [(r["state"], r["result"]["total"], r["parameters"]["label"]) for r in runs] == \
        [("passed", 2, "y"), ("passed", 4, "y")]

    assert main(["runs", "list", "sales"]) == 0
    assert f"#{runs[1]['id']}" in capsys.readouterr().out
    assert main(["runs", "show", str(runs[0]["id"])]) == 0
    assert "report.html: " in capsys.readouterr().out
    assert main(["runs", "cancel", str(runs[0]["id"])]) == 1  # finished already
    assert "NBA377" in capsys.readouterr().err
    assert main(["runs", "create", "broken", "--wait"]) == 1
    assert "NBA070" in capsys.readouterr().out
    assert main(["runs", "create", "sales", "-p", "n", "many"]) == 2
    assert "NBA102" in capsys.readouterr().err
