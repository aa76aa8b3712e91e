"""OS bounds of a real runner (DESIGN.md decision 9): what one viewer's app code can take.

A hostile app gets its abuse from the query string (``?mb=4096``, ``?procs=1000``,
``?shm_mb=64``) and reports what it managed; each time another viewer of the same app must
still get a rendered page. Also here: the kernel template's runner-level guarantees (inside the
sandbox and cgroup, forked kernels in their own leaves, nothing left after the runner stops or
dies), the short cull of kernels whose page never connected, and the WebSocket message limit.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from tornado.httpclient import HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError, websocket_connect

from nbapps import limits, sandbox
from tests.nbfactory import make_notebook
from tests.test_runner_fixtures import Gallery, fast_settings, write_bundle
from tests.test_runner_security import _reply, kernel_id_of, kmsg

pytestmark = pytest.mark.kernel
MIB = 1024 * 1024

ABUSE = r'''
import json, os, resource, subprocess
out = {"pid": os.getpid()}
if mb:
    held = []
    try:
        for _ in range(mb // 32):
            block = bytearray(32 << 20)
            block[::4096] = b"\x01" * len(range(0, len(block), 4096))  # really use the pages
            held.append(block)
    except MemoryError:
        out["memory_error"] = True
    out["held_mb"] = 32 * len(held)
    del held
if procs:
    started = []
    try:
        for _ in range(procs):
            started.append(subprocess.Popen(["sleep", "60"]))
    except OSError as exc:
        out["proc_error"] = type(exc).__name__
    out["started"] = len(started)
    for p in started:
        p.kill()
        p.wait()
if shm_mb:
    try:
        with open("/dev/shm/nbapps-limit-test", "wb") as fh:
            for _ in range(shm_mb):
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        out["shm_written"] = shm_mb
    except OSError as exc:
        out["shm_error"] = exc.errno
    finally:
        if os.path.exists("/dev/shm/nbapps-limit-test"):
            os.remove("/dev/shm/nbapps-limit-test")
if escape:
    cgroups = {}
    for line in open("/proc/self/cgroup").read().splitlines():
        _, names, path = line.split(":", 2)
        for name in names.split(","):
            cgroups[name] = path
    out["cgroup"] = cgroups.get("pids") or cgroups.get("")
    target = None
    for root in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        candidate = root + out["cgroup"] + "/pids.max"
        if os.path.exists(candidate):
            target = candidate
            break
    if target:
        try:
            with open(target, "w") as fh:
                fh.write("max")
            out["escape"] = "WROTE"
        except OSError:
            out["escape"] = "DENIED"
    out["as_limit"] = resource.getrlimit(resource.RLIMIT_AS)[1]
print("LIMITS " + json.dumps(out))
'''


def limits_app():
    return make_notebook(params="mb = 0  # MiB to hold\nprocs = 0  # processes to start\n"
                                "shm_mb = 0  # MiB to write to /dev/shm\n"
                                "escape = False  # try to raise our own limit\n",
                         widget=ABUSE + "\nprint('RESULT ok')")


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    root = tmp_path_factory.mktemp("lim")
    bundle = write_bundle(root / "bundle", limits_app())
    settings = fast_settings(pool_size=1, custom_pool_size=1, kernel_memory_limit=256 * MIB,
                             kernel_max_processes=48, shm_size=16 * MIB,
                             unconnected_cull_timeout=4)
    g = Gallery(root, {"lim": bundle}, runner=settings, sample_interval=0.5)
    try:
        g.start()
        g.ready("lim")
        yield g
    finally:
        g.stop()


def report(html: str) -> dict | None:
    m = re.search(r"LIMITS (\{.*?\})", html)
    return json.loads(m.group(1).replace("&#34;", '"').replace("&quot;", '"')) if m else None


def other_viewer_is_served(g: Gallery) -> None:
    r = httpx.get(g.url("/apps/lim/"), timeout=120)
    assert r.status_code == 200 and "RESULT ok" in r.text


def needs_cgroups(g: Gallery) -> None:
    if g.supervisor.cgroups is None:
        pytest.skip(f"no cgroups here: {g.supervisor.cgroups_reason}")


def test_runner_template_and_kernels_are_bounded(gallery):
    """Voilà and the template in the runner's cgroup, each forked kernel in its own leaf."""
    needs_cgroups(gallery)
    runner = gallery.supervisor.runner_for("lim")
    applied = json.loads((runner.dir / "limits-applied.json").read_text())
    assert applied["cgroup"] and not applied["errors"], applied
    status = runner.read_status()
    assert status["forked"], "no kernel was forked"
    voila = psutil.Process(runner.pid)
    template = [c for c in voila.children() if "nbapps.runner.forkserver" in " ".join(c.cmdline())]
    assert len(template) == 1
    kernels = template[0].children()
    assert kernels, "the template has no kernels"
    runner_pids = set(limits.cgroup_pids(runner.cgroup.dirs()))
    assert {voila.pid, template[0].pid} <= runner_pids
    for kernel in kernels:
        leaf = limits.kernel_leaf(runner.cgroup, f"k{kernel.pid}")
        assert kernel.pid in limits.cgroup_pids(sorted(set(leaf.values())))
        assert int((leaf["pids"] / "pids.max").read_text()) == 48
        soft, hard = psutil.Process(kernel.pid).rlimit(psutil.RLIMIT_AS)
        assert hard == 256 * MIB + limits.ADDRESS_SPACE_HEADROOM


def test_a_viewer_cannot_hold_4_gib(gallery):
    r = httpx.get(gallery.url("/apps/lim/?mb=4096"), timeout=180)
    found = report(r.text)
    # either the app saw MemoryError, or the kernel was stopped by the OOM killer of its leaf
    assert found is None or found["held_mb"] <= 256 + 64, found
    assert "held_mb\": 4096" not in r.text
    other_viewer_is_served(gallery)


def test_a_viewer_cannot_start_1000_processes(gallery):
    needs_cgroups(gallery)
    r = httpx.get(gallery.url("/apps/lim/?procs=1000"), timeout=180)
    found = report(r.text)
    assert found is not None, r.text[-2000:]
    assert found["started"] < 48 and found.get("proc_error"), found
    other_viewer_is_served(gallery)


def test_dev_shm_is_private_and_bounded(gallery):
    runner = gallery.supervisor.runner_for("lim")
    applied = json.loads((runner.dir / "limits-applied.json").read_text())
    if not applied.get("shm"):
        pytest.skip("no private /dev/shm here: " + "; ".join(applied["errors"]))
    r = httpx.get(gallery.url("/apps/lim/?shm_mb=64"), timeout=180)
    found = report(r.text)
    assert found is not None and "shm_written" not in found and found["shm_error"] == 28, found
    assert not Path("/dev/shm/nbapps-limit-test").exists(), "the runner's /dev/shm is shared"
    other_viewer_is_served(gallery)


def test_app_code_cannot_raise_its_own_limits(gallery):
    needs_cgroups(gallery)
    if not sandbox.available():
        pytest.skip("without Landlock app code running as the gallery's user can write them")
    r = httpx.get(gallery.url("/apps/lim/?escape=True"), timeout=180)
    found = report(r.text)
    assert found is not None and found["escape"] == "DENIED", found
    assert found["as_limit"] == 256 * MIB + limits.ADDRESS_SPACE_HEADROOM


def test_kernels_of_pages_that_never_connect_are_culled(gallery):
    """34 plain GETs must not hold kernels for the idle cull's 10 minutes."""
    r = httpx.get(gallery.url("/apps/lim/?procs=0&mb=0&shm_mb=0&escape=False"), timeout=120)
    lone = kernel_id_of(r.text)
    page = httpx.get(gallery.url("/apps/lim/"), timeout=120)
    kept = kernel_id_of(page.text)

    async def connected_and_lone() -> tuple[bool, bool]:
        conn = await websocket_connect(HTTPRequest(
            gallery.ws_url(f"/apps/lim/api/kernels/{kept}/channels?session_id=k")))
        conn.write_message(kmsg("kernel_info_request"))
        await _reply(conn, "kernel_info_reply")
        deadline = time.monotonic() + 40
        culled = False
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                lone_r = await client.get(gallery.url(f"/apps/lim/api/kernels/{lone}"))
                if lone_r.status_code == 404:
                    culled = True
                    break
                await asyncio.sleep(0.5)
            alive = (await client.get(gallery.url(f"/apps/lim/api/kernels/{kept}"))
                     ).status_code == 200
        conn.close()
        return culled, alive

    culled, alive = asyncio.run(connected_and_lone())
    assert culled, "the kernel of a page that never connected was not culled"
    assert alive, "a connected page's kernel was culled"
    status = gallery.supervisor.runner_for("lim").read_status()
    assert status["unconnected_culled"] >= 1


def test_large_websocket_messages_are_refused_by_the_runner(gallery):
    page = httpx.get(gallery.url("/apps/lim/"), timeout=120)
    kid = kernel_id_of(page.text)
    runner = gallery.supervisor.runner_for("lim", kid)

    async def send(size: int) -> bool:
        """Whether the connection still answers after a message of ``size`` bytes."""
        conn = await websocket_connect(HTTPRequest(
            runner.ws_url(f"api/kernels/{kid}/channels", "session_id=big"),
            headers=runner.auth_headers))
        filler = "x" * size
        try:  # a refused message may close the connection before the second write
            conn.write_message(kmsg("comm_msg", {"comm_id": "nope", "data": {"fill": filler}}))
            conn.write_message(kmsg("kernel_info_request"))
            await _reply(conn, "kernel_info_reply", timeout=20)
            return True
        except (AssertionError, asyncio.TimeoutError, StreamClosedError,
                WebSocketClosedError):  # refused: the runner closed the connection
            return False
        finally:
            conn.close()

    assert asyncio.run(send(100 * 1024)), "a normal message broke the connection"
    assert not asyncio.run(send(2 * MIB)), "a 2 MiB message was accepted"


def test_a_killed_runner_leaves_no_process_or_cgroup(tmp_path):
    """SIGKILL of Voilà: its template and kernels go too; the supervisor's clean-up removes
    the cgroups."""
    bundle = write_bundle(tmp_path / "bundle", limits_app())
    g = Gallery(tmp_path, {"k": bundle}, runner=fast_settings(), sample_interval=0.2)
    try:
        g.start()
        runner = g.ready("k")
        voila = psutil.Process(runner.pid)
        tree = [voila, *voila.children(recursive=True)]
        assert len(tree) >= 3
        folders = runner.cgroup.dirs() if runner.cgroup else []
        os.kill(runner.pid, signal.SIGKILL)

        def all_gone() -> bool:
            return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in tree)

        deadline = time.monotonic() + 30
        while not all_gone() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all_gone(), [p.pid for p in tree if p.is_running()]
        deadline = time.monotonic() + 30
        while any(f.exists() for f in folders) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(f.exists() for f in folders)
        support = g.supervisor.cgroups
    finally:
        g.stop()
    if support is not None:  # the gallery's own cgroup folder goes when it stops
        assert not any(d.exists() for d in support.group_dirs(tmp_path / "runtime"))
