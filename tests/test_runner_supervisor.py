"""Supervisor behaviour with real runners: limits, idle stop, culling, switch, shutdown, orphans."""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from nbapps.runner import RunnerError, Supervisor, SupervisorSettings
from tests.test_runner_fixtures import Gallery, fast_settings, widget_app_notebook, write_bundle
from tests.test_runner_security import _reply, kernel_id_of, kmsg

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[1]


def versioned_app(folder: Path, version: int) -> Path:
    nb = widget_app_notebook()
    nb.cells[-1].source += f"\nprint('VERSION', {version})"
    return write_bundle(folder, nb)


def tree_pids(pid: int) -> list[int]:
    try:
        root = psutil.Process(pid)
        return [root.pid, *(c.pid for c in root.children(recursive=True))]
    except psutil.Error:
        return []


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def wait_until(cond, timeout: float = 30, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def close_page(g: Gallery, slug: str, html: str) -> None:
    """What a browser does when the page closes: Voilà's unload beacon."""
    kid = kernel_id_of(html)
    httpx.post(g.url(f"/apps/{slug}/voila/api/shutdown/{kid}"), files={"_xsrf": (None, "")},
               timeout=30)


def test_kernel_cap_gives_a_busy_page_with_retry_after(tmp_path):
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "a", 1)}, max_kernels_per_app=1,
                sample_interval=0.2)
    try:
        g.start()
        g.ready("a")
        first = httpx.get(g.url("/apps/a/"), timeout=60)
        assert first.status_code == 200
        busy = httpx.get(g.url("/apps/a/"), timeout=60)
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0
        assert "busy" in busy.text and "simultaneous viewers" in busy.text
        close_page(g, "a", first.text)
        assert wait_until(lambda: httpx.get(g.url("/apps/a/"), timeout=60).status_code == 200,
                          timeout=30, step=0.5)
    finally:
        g.stop()


def test_memory_budget_gives_a_busy_page_and_starts_nothing(tmp_path):
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "a", 1)}, memory_budget=1)
    try:
        g.start()
        r = httpx.get(g.url("/apps/a/"), timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] and "memory" in r.text
        assert g.supervisor.snapshot() == []
    finally:
        g.stop()


def test_idle_runner_is_stopped_and_starts_again_on_demand(tmp_path):
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "a", 1)}, idle_timeout=2,
                sample_interval=0.2)
    try:
        g.start()
        runner = g.ready("a")
        pids = tree_pids(runner.pid)
        assert len(pids) >= 2
        assert wait_until(lambda: not alive(pids), timeout=30)
        assert g.supervisor.snapshot() == [] and g.supervisor.counters["idle_stops"] == 1
        assert httpx.get(g.url("/apps/a/"), timeout=30).status_code == 503  # starting again
        g.ready("a", warm=False)
    finally:
        g.stop()


def test_idle_kernels_are_culled_even_with_a_connected_page(tmp_path):
    runner_settings = fast_settings(cull_idle_timeout=2, cull_interval=1, custom_pool_size=0)
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "a", 1)}, runner=runner_settings)
    try:
        g.start()
        g.ready("a")
        lone = kernel_id_of(httpx.get(g.url("/apps/a/"), timeout=60).text)
        g.wait_warm("a")
        connected = kernel_id_of(httpx.get(g.url("/apps/a/"), timeout=60).text)

        async def keep_connected() -> bool:
            from tornado.httpclient import HTTPRequest
            from tornado.websocket import websocket_connect

            conn = await websocket_connect(HTTPRequest(
                g.ws_url(f"/apps/a/api/kernels/{connected}/channels?session_id=c")))
            conn.write_message(kmsg("kernel_info_request"))
            await _reply(conn, "kernel_info_reply")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if httpx.get(g.url(f"/apps/a/api/kernels/{connected}"),
                             timeout=10).status_code == 404:
                    conn.close()
                    return True
                await asyncio.sleep(0.5)
            conn.close()
            return False

        assert asyncio.run(keep_connected()), "connected idle kernel not culled"
        assert httpx.get(g.url(f"/apps/a/api/kernels/{lone}"), timeout=10).status_code == 404
        runner = g.supervisor.runner_for("a")
        assert wait_until(lambda: runner.read_status().get("in_use") == 0, timeout=10)
        assert runner.pools_ready()  # pooled kernels are never culled
    finally:
        g.stop()


def test_new_version_switch_has_zero_failed_requests_and_old_runner_drains(tmp_path):
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "v1", 1)},
                runner=fast_settings(pool_size=2, custom_pool_size=0), sample_interval=0.2)
    results: list[tuple[int, int | None]] = []
    stop = threading.Event()

    def viewers() -> None:
        with httpx.Client(timeout=120) as c:
            while not stop.is_set():
                r = c.get(g.url("/apps/a/"))
                m = re.search(r"VERSION (\d)", r.text)
                results.append((r.status_code, int(m.group(1)) if m else None))
                if r.status_code == 200:
                    close_page(g, "a", r.text)

    try:
        g.start()
        old = g.ready("a")
        old_pids = tree_pids(old.pid)
        page = httpx.get(g.url("/apps/a/"), timeout=60)  # a viewer who stays connected
        kid = kernel_id_of(page.text)

        async def open_ws():
            from tornado.httpclient import HTTPRequest
            from tornado.websocket import websocket_connect

            conn = await websocket_connect(HTTPRequest(
                g.ws_url(f"/apps/a/api/kernels/{kid}/channels?session_id=v1")))
            conn.write_message(kmsg("kernel_info_request"))
            await _reply(conn, "kernel_info_reply")
            return conn

        ws = g.loop.run(open_ws())
        # a page served just before the switch whose front end connects after it (seconds
        # later, once its scripts have loaded): its kernel must still be there
        late = kernel_id_of(httpx.get(g.url("/apps/a/"), timeout=60).text)
        thread = threading.Thread(target=viewers, daemon=True)
        thread.start()
        time.sleep(1.0)
        starts = g.supervisor.counters["starts"]
        g.deploy("a", "v2", versioned_app(tmp_path / "v2", 2), at_once=2)
        assert g.supervisor.counters["starts"] == starts + 1  # the second deploy joined the first
        assert wait_until(lambda: any(v == 2 for _, v in results), timeout=120)
        n = len(results)
        assert wait_until(lambda: len(results) >= n + 3, timeout=120)
        stop.set()
        thread.join(120)
        assert results and all(code == 200 for code, _ in results), results
        versions = [v for _, v in results]
        assert versions == sorted(versions) and versions[-1] == 2, versions
        # the connected v1 page still works while the old runner drains
        assert old.state.value == "draining" and alive(old_pids)

        async def still_alive() -> None:
            ws.write_message(kmsg("kernel_info_request"))
            await _reply(ws, "kernel_info_reply")
            ws.close()

        g.loop.run(still_alive())
        time.sleep(1.0)  # several supervision rounds (0.2 s) with no socket open on v1

        async def late_page_connects() -> None:
            from tornado.httpclient import HTTPRequest
            from tornado.websocket import websocket_connect

            conn = await websocket_connect(HTTPRequest(
                g.ws_url(f"/apps/a/api/kernels/{late}/channels?session_id=late")))
            conn.write_message(kmsg("kernel_info_request"))
            await _reply(conn, "kernel_info_reply")
            conn.close()

        assert alive(old_pids), "the old runner stopped under a page not connected yet"
        g.loop.run(late_page_connects())
        assert wait_until(lambda: not alive(old_pids), timeout=90), "old runner not stopped"
        assert g.supervisor.counters["switches"] == 1
    finally:
        stop.set()
        g.stop()


def test_close_stops_every_child_process(tmp_path):
    g = Gallery(tmp_path, {"a": versioned_app(tmp_path / "a", 1),
                           "b": versioned_app(tmp_path / "b", 2)})
    pids: list[int] = []
    try:
        g.start()
        for slug in ("a", "b"):
            runner = g.ready(slug, warm=False)
            pids += tree_pids(runner.pid)
        httpx.get(g.url("/apps/a/"), timeout=60)
        assert len(alive(pids)) >= 4
    finally:
        g.stop()
    assert alive(pids) == []
    assert json.loads((tmp_path / "runtime" / "supervisor.json").read_text()
                      if (tmp_path / "runtime" / "supervisor.json").exists() else "{}") == {}


GALLERY_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, {repo!r})
    from tests.test_runner_fixtures import Gallery
    g = Gallery(Path({root!r}), {{"a": Path({bundle!r})}}).start()
    runner = g.ready("a", warm=False)
    print(json.dumps({{"pid": runner.pid}}), flush=True)
    time.sleep(600)
""")


def test_orphans_of_a_killed_gallery_are_stopped_at_next_start(tmp_path):
    bundle = versioned_app(tmp_path / "a", 1)
    root = tmp_path / "g"
    script = GALLERY_SCRIPT.format(repo=str(REPO), root=str(root), bundle=str(bundle))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    pids: list[int] = []
    try:
        line = proc.stdout.readline()
        assert line, "gallery subprocess did not start its runner"
        pids = tree_pids(json.loads(line)["pid"])
        assert len(pids) >= 2
        os.kill(proc.pid, signal.SIGKILL)  # the gallery dies without cleaning up
        proc.wait(10)
        time.sleep(0.5)
        assert alive(pids[:1]), "the runner should have survived its gallery"

        async def restart() -> None:
            sup = Supervisor(SupervisorSettings(runtime_dir=root / "runtime"), lambda s: None)
            await sup.start()
            await sup.close()

        asyncio.run(restart())
        assert wait_until(lambda: not alive(pids), timeout=15), alive(pids)
        assert not list((root / "runtime" / "runners").glob("*"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in alive(pids):
            os.kill(pid, signal.SIGKILL)


def test_a_second_gallery_on_the_same_data_dir_is_refused(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from pathlib import Path
        from nbapps.runner.orphans import write_state
        write_state(Path({str(tmp_path / 'rt')!r}), [])
        print("ok", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ok"

        async def start() -> None:
            await Supervisor(SupervisorSettings(runtime_dir=tmp_path / "rt"),
                             lambda s: None).start()

        with pytest.raises(RunnerError) as info:
            asyncio.run(start())
        assert info.value.code == "NBA403"
    finally:
        holder.kill()
        holder.wait(10)
