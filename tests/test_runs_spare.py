"""Runs that start from a kernel started ahead (a spare run program's), with real kernels.

The kernel is started before the parameters are known (:func:`nbapps.execute.start_kernel`):
the run must still get its parameters (papermill's injected cell), the client that cannot miss
a wake-up, the cell and total timeouts (the total timeout kills the pre-started kernel too), and
no kernel may outlive the run, nor a spare program that is discarded without a job.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import pytest

from nbapps import sandbox
from nbapps.execute import run_notebook, start_kernel
from nbapps.kernel import NbappsKernelClient, SlicedPollChannel
from nbapps.runs.worker import RunSettings, SpareProgram
from tests.nbfactory import make_notebook
from tests.server_harness import catalog_of, seed_version, thread_gallery
from tests.test_runs_api import wait_run

pytestmark = pytest.mark.kernel


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def kernel_pid(kernel) -> int:
    pid = kernel.km.provisioner.pid
    assert psutil.pid_exists(pid)
    return pid


def test_a_started_kernel_runs_the_notebook_with_its_parameters(tmp_path):
    kernel = start_kernel("python3", tmp_path)
    pid = kernel_pid(kernel)
    nb = make_notebook(extra=["print(f'n={n} label={label}')"])
    result = run_notebook(nb, {"n": 7, "label": "y"}, cwd=tmp_path, cell_timeout=30,
                          total_timeout=60, kernel=kernel)
    assert result.ok, result.findings
    text = "".join(o.get("text", "") for c in result.nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "n=7 label=y" in text
    # the run's client was nbapps' (sliced polls: no missed wake-ups), closed after the run
    (client,) = kernel.km.clients
    assert isinstance(client, NbappsKernelClient) and not client.channels_running
    assert isinstance(client.shell_channel, SlicedPollChannel)
    # the kernel was the one started ahead, and it is gone with its folder
    assert gone(pid)
    assert not kernel.private.exists()


def test_total_and_cell_timeouts_stop_a_started_kernel(tmp_path):
    kernel = start_kernel("python3", tmp_path)
    pid = kernel_pid(kernel)
    nb = make_notebook(extra=["import time\ntime.sleep(120)"])
    result = run_notebook(nb, {}, cwd=tmp_path, cell_timeout=60, total_timeout=3,
                          kernel=kernel)
    assert [f.code for f in result.findings][:1] == ["NBA072"]
    assert gone(pid)
    kernel = start_kernel("python3", tmp_path)
    pid = kernel_pid(kernel)
    result = run_notebook(nb, {}, cwd=tmp_path, cell_timeout=2, total_timeout=60,
                          kernel=kernel)
    assert [f.code for f in result.findings][:1] == ["NBA071"]
    assert gone(pid)


def test_a_started_kernel_of_another_name_or_folder_is_not_used(tmp_path):
    kernel = start_kernel("python3", tmp_path)
    pid = kernel_pid(kernel)
    other = tmp_path / "other"
    other.mkdir()
    nb = make_notebook(extra=["import os\nprint(os.getpid(), os.getcwd())"])
    result = run_notebook(nb, {}, cwd=other, cell_timeout=30, total_timeout=60, kernel=kernel)
    assert result.ok, result.findings
    text = "".join(o.get("text", "") for c in result.nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert str(other) in text and str(pid) not in text.split()
    assert gone(pid)


def test_a_discarded_spare_program_leaves_no_process(tmp_path):
    settings = RunSettings(data_dir=tmp_path / "data", sandbox=True)
    settings.folder.mkdir(parents=True)
    spare = SpareProgram(settings, threading.Event())
    program = psutil.Process(spare.proc.pid)
    deadline = time.monotonic() + 120
    kernels: list[psutil.Process] = []
    while not kernels:  # its kernel, started ahead
        assert time.monotonic() < deadline and spare.alive(), Path(spare.log_path).read_text()
        kernels = [p for p in program.children(recursive=True)
                   if "ipykernel" in " ".join(p.cmdline())]
        time.sleep(0.1)
    family = [program, *program.children(recursive=True)]
    spare.discard()
    assert all(gone(p.pid) for p in family)
    assert not spare.folder.exists() and not spare.tmp.exists()


#: the program's output folder, found as an attacker would: the data dir (given: it may be
#: guessed) and the run's folder name (the end of the kernel's TMPDIR); a forked program's
#: command line is its zygote's, so it cannot be read there
FORGE = ("import os\n"
         "name = os.path.basename(os.environ['TMPDIR'])[len('nbapps-rn-12345678-'):]\n"
         "out = os.path.join(DATA_DIR, 'runs', name, 'work', 'out')\n"
         "assert os.path.isdir(out), out\n"
         "try:\n"
         "    with open(os.path.join(out, 'run.json'), 'w') as f:\n"
         "        f.write('{\"ok\": true}')\n"
         "    verdict = 'wrote'\n"
         "except PermissionError:\n"
         "    verdict = 'refused'\n"
         "import nbapps\n"
         "nbapps.record('verdict', verdict)\n"
         "nbapps.record('n', n)\n")


@pytest.mark.skipif(not sandbox.available(), reason="needs Landlock")
@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_run_in_a_spare_program_is_as_confined_as_a_cold_one(tmp_path, fork):
    """The second run takes the spare the first left behind (its kernel started ahead): its
    notebook still cannot write the program's output folder (its own run.json, say); the
    same whether the programs are forked from the run zygote (the default) or spawned."""
    args = ["--NbappsServer.check_workers=0", "--NbappsServer.check_unchecked_versions=False",
            "--NbappsServer.run_pdf=False", "--NbappsServer.run_workers=1",
            f"--NbappsServer.run_fork={fork}"]
    with thread_gallery(tmp_path, args=args) as g:
        with catalog_of(g) as (cat, store):
            sub = seed_version(cat, store, slug="forge", submitter="ana", title="Forge",
                               nb=make_notebook(extra=[f"DATA_DIR = {str(g.data_dir)!r}\n"
                                                       + FORGE]))
            cat.decide(sub.version.id, "rita", "approve", "ok")
        with g.client("vic") as c:
            runs = []
            for n in (4, 6):
                r = c.post("/api/apps/forge/runs", json={"parameters": {"n": n}})
                assert r.status_code == 202, r.text
                runs.append(wait_run(c, r.json()["runs"][0]["id"]))
    cold, warm = runs
    assert not cold["details"]["folder"].startswith("spare-")
    assert warm["details"]["folder"].startswith("spare-")
    for run, n in ((cold, 4), (warm, 6)):
        assert run["state"] == "passed", run
        assert run["details"]["confined"] is True
        assert run["details"]["forked"] is fork
        assert run["result"] == {"verdict": "refused", "n": n}
