"""Run programs forked from the run zygote (:mod:`nbapps.runs.zygote`), with real processes.

A forked program must be what a spawned one is: a child set up with its job's folders,
environment and Landlock layer (not the zygote's), its own session, tied to its parent; its
kernel is forked from a kernel template of its own (:mod:`nbapps.runs.kernels`) with the job's
environment and fresh random state; a zygote that dies takes its programs with it, and the
gallery's next runs are served anyway (another zygote); nothing outlives the pool.
Confinement of forked and spawned runs against a notebook that tries to forge its run's
summary: tests/test_runs_spare.py.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest

from nbapps import sandbox
from nbapps.runs.forks import Zygote, zygote_rules
from nbapps.runs.worker import RunSettings, SpareProgram
from tests.nbfactory import make_notebook
from tests.server_harness import catalog_of, seed_version, thread_gallery
from tests.test_runs_api import wait_run
from tests.test_runs_spare import gone

pytestmark = pytest.mark.kernel

#: what a run's notebook records of the process that runs it (the program is its kernel's
#: parent, the zygote its grandparent)
PEEK = ("import os, random\n"
        "import nbapps\n"
        "nbapps.record('tmpdir', os.environ['TMPDIR'])\n"
        "nbapps.record('draw', random.random())\n")


def zygote_of(pid: int) -> list[psutil.Process]:
    """The run zygotes started by ``pid`` (its children: the programs they fork show the same
    command line)."""
    return [p for p in psutil.Process(pid).children()
            if "nbapps.runs.zygote" in " ".join(p.cmdline())]


@pytest.mark.skipif(not sandbox.available(), reason="needs Landlock")
def test_a_forked_program_gets_its_own_folders_environment_session_and_layer(tmp_path):
    settings = RunSettings(data_dir=tmp_path / "data", sandbox=True)
    settings.folder.mkdir(parents=True)
    zygote = Zygote(None, settings.folder,
                    zygote_rules(settings.data_dir, settings.folder, [], None))
    spares: list[SpareProgram] = []
    try:
        assert zygote.wait_ready()
        spares = [SpareProgram(settings, threading.Event(), zygote) for _ in range(2)]
        for spare in spares:
            assert spare.forked and spare.confined and spare.alive()
            program = psutil.Process(spare.proc.pid)
            assert program.ppid() == zygote.pid
        a, b = spares
        assert a.tmp != b.tmp and a.work != b.work
        family = []
        for spare in spares:
            program = psutil.Process(spare.proc.pid)
            deadline = time.monotonic() + 120
            kernels: list[psutil.Process] = []
            while not kernels:  # its kernel, forked from its kernel template (its child)
                assert time.monotonic() < deadline and spare.alive(), \
                    spare.log_path.read_text()
                time.sleep(0.1)
                kernels = [k for t in program.children() for k in t.children()]
            assert all("ipykernel" not in " ".join(k.cmdline()) for k in kernels)  # not spawned
            # the job's folders (its environment is set after the fork, so /proc shows the
            # zygote's: what a notebook sees is in test_runs_go_on_when_the_zygote_is_killed)
            assert program.cwd() == str(spare.work)
            assert kernels[0].cwd() == str(spare.tmp / "run")
            assert os.getsid(program.pid) == program.pid  # a session of its own
            family += [program, *program.children(recursive=True)]
        spares[0].discard()
        assert spares[0].proc.wait(10) is not None
        assert spares[1].alive()
        # the zygote stops: what it forked goes with it (kernels included)
        zygote.stop()
        assert all(gone(p.pid) for p in family)
        assert spares[1].proc.wait(10) is not None
    finally:
        for spare in spares:
            spare.discard()
        zygote.stop()
    assert not psutil.pid_exists(zygote.pid)


def test_runs_go_on_when_the_zygote_is_killed(tmp_path):
    """kill -9 of the zygote: its spare (waiting for the next job) dies with it; the next run
    is served anyway (a new zygote); nothing is left at the stop."""
    args = ["--NbappsServer.check_workers=0", "--NbappsServer.check_unchecked_versions=False",
            "--NbappsServer.run_pdf=False", "--NbappsServer.run_workers=1"]
    with thread_gallery(tmp_path, args=args) as g:
        with catalog_of(g) as (cat, store):
            sub = seed_version(cat, store, slug="peek", submitter="ana", title="Peek",
                               nb=make_notebook(extra=[PEEK]))
            cat.decide(sub.version.id, "rita", "approve", "ok")
        with g.client("vic") as c:
            def run() -> dict:
                r = c.post("/api/apps/peek/runs", json={})
                assert r.status_code == 202, r.text
                done = wait_run(c, r.json()["runs"][0]["id"])
                assert done["state"] == "passed", done
                return done

            first = run()
            assert first["details"]["forked"] is True
            zygotes = zygote_of(os.getpid())
            assert len(zygotes) == 1
            old = zygotes[0]
            spares = old.children()  # the next run's program, forked ahead
            old.send_signal(signal.SIGKILL)
            assert gone(old.pid) and all(gone(p.pid) for p in spares)
            second, third = run(), run()
            for done in (second, third):
                assert done["details"]["forked"] is True
            assert [z.pid for z in zygote_of(os.getpid())] != [old.pid]
            assert len({r["result"]["tmpdir"] for r in (first, second, third)}) == 3
            # kernels forked from templates forked from one zygote: fresh random state each
            assert len({r["result"]["draw"] for r in (first, second, third)}) == 3
            left = zygote_of(os.getpid())
    assert left and all(gone(z.pid) for z in left)
    assert zygote_of(os.getpid()) == []


@pytest.mark.skipif(not sandbox.available(), reason="needs Landlock")
def test_a_forked_program_is_held_to_the_rules_it_was_given(tmp_path):
    """The layer is the job's, put on after the fork: a program whose rules leave out its own
    source folder cannot read its notebook (the zygote itself could)."""
    import nbformat

    settings = RunSettings(data_dir=tmp_path / "data", sandbox=True)
    src, work, tmp = settings.folder / "x" / "src", settings.folder / "x" / "work", \
        tmp_path / "tmp"
    for folder in (src, work / "out", tmp):
        folder.mkdir(parents=True)
    nbformat.write(make_notebook(), str(src / "app.ipynb"))
    zygote = Zygote(None, settings.folder,
                    zygote_rules(settings.data_dir, settings.folder, [], None))
    try:
        assert zygote.wait_ready()
        env = {"PATH": os.environ["PATH"], "HOME": str(work), "TMPDIR": str(tmp)}
        for readable, ok in ((False, False), (True, True)):
            rules = sandbox.plan(read=[src] if readable else [], write=[work, tmp],
                                 protect=[settings.data_dir])
            out = work / f"out-{readable}"
            program = zygote.spawn(["--source", str(src), "--out", str(out),
                                    "--parent", str(zygote.pid), "--kernel-sandbox",
                                    "--fork-kernels"], cwd=work, env=env,
                                   log_path=work / "run.log", rules=rules)
            assert program is not None
            assert program.wait(120) == 0, (work / "run.log").read_text()
            summary = json.loads((out / "run.json").read_text())
            assert summary["ok"] is ok, summary
            if not ok:
                assert "ermission" in json.dumps(summary["findings"])
    finally:
        zygote.stop()
