"""Kernels forked from a runner's warm template keep every guarantee of a spawned kernel.

Real kernels, no Voilà: a kernel template (``python -m nbapps.runner.forkserver``) is started by
the test process (its parent) with one end of a socketpair, and jupyter_client kernel managers
use :class:`~nbapps.runner.provisioner.ForkProvisioner` with the other end, as a runner's Voilà
does. The runner-level guarantees (sandbox, limits, pools, orphans) are in
``test_runner_limits.py``.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from jupyter_client.manager import AsyncKernelManager

from nbapps.runner.forkserver import TemplateConfig
from nbapps.runner.provisioner import ForkProvisioner, TemplateClient, install_client

pytestmark = pytest.mark.kernel
REPO = Path(__file__).resolve().parents[1]

#: a library that draws random generators when imported (the template imports it once)
SEEDED = textwrap.dedent("""
    import random
    import numpy as np
    R = random.Random()
    LEGACY = np.random.RandomState()
    GEN = np.random.default_rng()
    AT_IMPORT = random.random()
""")


def wait_until(cond, timeout: float = 30.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return bool(cond())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Template:
    """A kernel template started by this test process, and the client for it."""

    def __init__(self, folder: Path, preload: list[str], env: dict[str, str] | None = None,
                 **config: Any) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.app_dir = folder / "app"
        self.app_dir.mkdir(exist_ok=True)
        cfg = TemplateConfig(app_dir=str(self.app_dir), preload=preload, **config)
        self.config_path = folder / "template.json"
        cfg.dump(self.config_path)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "nbapps.runner.forkserver", "--fd", str(theirs.fileno()),
             "--config", str(self.config_path), "--parent", str(os.getpid())],
            pass_fds=[theirs.fileno()], env={**os.environ, **(env or {})})
        theirs.close()
        self.client = TemplateClient(ours)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.sock.close()


@pytest.fixture(scope="module")
def libdir(tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("lib")
    (lib / "seeded_lib.py").write_text(SEEDED)
    return lib


@pytest.fixture(scope="module")
def template(tmp_path_factory, libdir):
    env = {"PYTHONPATH": os.pathsep.join([str(libdir), *sys.path[1:]]),
           "NBAPPS_TEMPLATE_ONLY": "template"}
    t = Template(tmp_path_factory.mktemp("tpl"), ["numpy", "seeded_lib", "pandas"], env=env)
    install_client(t.client)
    try:
        yield t
    finally:
        install_client(None)
        t.stop()


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NBAPPS_TEMPLATE_ONLY"}
    env.update(extra or {})
    return env


async def start(cwd: Path, env: dict[str, str] | None = None, *, template_fd: int = 0
                ) -> AsyncKernelManager:
    """A kernel manager with our provisioner, its kernel started and ready."""
    km = AsyncKernelManager(kernel_name="python3")
    km.kernel_id = str(uuid.uuid4())
    km.provisioner = ForkProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec,
                                     parent=km, template_fd=template_fd, fork_timeout=60)
    await km.start_kernel(env=kernel_env(env), cwd=str(cwd))
    client = km.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    client.stop_channels()
    return km


async def run(km: AsyncKernelManager, code: str) -> dict[str, Any]:
    """Execute ``code`` (which prints one JSON line) and return that JSON."""
    client = km.client()
    client.start_channels()
    out: list[str] = []
    try:
        reply = await client.execute_interactive(
            code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", ""))
            if m["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
    return json.loads("".join(out).strip().splitlines()[-1])


PROBE = textwrap.dedent("""
    import json, os, random, secrets, sys, threading
    import numpy as np, seeded_lib
    print(json.dumps({
        "pid": os.getpid(), "pgid": os.getpgid(0), "sid": os.getsid(0), "ppid": os.getppid(),
        "cwd": os.getcwd(), "path0": sys.path[0], "env": os.environ.get("WHO"),
        "template_only": os.environ.get("NBAPPS_TEMPLATE_ONLY"),
        "random": random.random(), "numpy": float(np.random.rand()),
        "secrets": secrets.token_hex(8), "lib_r": seeded_lib.R.random(),
        "lib_legacy": float(seeded_lib.LEGACY.rand()), "lib_gen": float(seeded_lib.GEN.random()),
        "lib_at_import": seeded_lib.AT_IMPORT, "preloaded": "pandas" in sys.modules,
        "threads": threading.active_count(),
    }))
""")


def test_siblings_are_separate_kernels_with_fresh_state(template, tmp_path):
    """Own process group, connection file, HMAC key, env and cwd; nothing random shared."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()

    async def scenario() -> tuple[list[dict[str, Any]], list[AsyncKernelManager]]:
        kms = [await start(tmp_path / "one", {"WHO": "one"}),
               await start(tmp_path / "two", {"WHO": "two"})]
        try:
            return [await run(km, PROBE) for km in kms], kms
        finally:
            for km in kms:
                await km.shutdown_kernel()

    (a, b), (ka, kb) = asyncio.run(scenario())
    for probe, name in ((a, "one"), (b, "two")):
        assert probe["ppid"] == template.proc.pid, "not forked from the template"
        assert probe["pgid"] == probe["pid"] == probe["sid"], "no session of its own"
        assert probe["cwd"] == str(tmp_path / name) and probe["path0"] == probe["cwd"]
        assert probe["env"] == name and probe["template_only"] is None
        assert probe["preloaded"], "pandas was not imported by the template"
    assert a["pid"] != b["pid"]
    assert ka.connection_file != kb.connection_file
    assert ka.session.key != kb.session.key and len(ka.session.key) >= 32
    for key in ("random", "numpy", "secrets", "lib_r", "lib_legacy", "lib_gen"):
        assert a[key] != b[key], f"{key} is the same in two forked kernels"
    assert a["lib_at_import"] == b["lib_at_import"], "(drawn once, in the template)"


def test_shutdown_is_clean_and_the_template_reaps(template, tmp_path):
    """The kernel exits by itself on the shutdown request (status 0, no SIGTERM/SIGKILL)."""
    statuses: list[int | None] = []
    pids: list[int] = []

    async def scenario() -> None:
        for _ in range(3):
            km = await start(tmp_path)
            prov = km.provisioner
            assert isinstance(prov, ForkProvisioner) and prov.forked
            pid = prov.pid
            pids.append(pid)
            await km.shutdown_kernel(now=False)
            statuses.append(template.client.exit_status(pid))

    asyncio.run(scenario())
    assert all(gone(pid) for pid in pids)
    # exit_status is forgotten once waited for; 0 or None (forgotten) but never a signal
    assert all(s in (0, None) for s in statuses), statuses
    children = psutil.Process(template.proc.pid).children()
    assert not [c for c in children if c.pid in pids], "zombies left in the template"


def test_kernel_started_ahead_is_ready_quickly_and_reported(template, tmp_path):
    """Time to the first kernel_info reply, forked vs spawned (printed, not asserted)."""
    async def timed(fd: int | None) -> float:
        t0 = time.perf_counter()
        if fd is None:
            install_client(None)
        try:
            km = await start(tmp_path, template_fd=-1 if fd is None else 0)
        finally:
            install_client(template.client)
        took = time.perf_counter() - t0
        forked = km.provisioner.forked
        await km.shutdown_kernel(now=True)
        assert forked == (fd is not None)
        return took

    forked = [asyncio.run(timed(0)) for _ in range(3)]
    spawned = [asyncio.run(timed(None)) for _ in range(2)]
    print(f"ready for the first execute: forked {sorted(forked)}, spawned {sorted(spawned)}")


def test_falls_back_to_spawning(template, tmp_path):
    """No template, a foreign kernel command or a dead template: the kernel is spawned."""
    async def spawned_without_client() -> bool:
        install_client(None)
        try:
            km = await start(tmp_path, template_fd=-1)
        finally:
            install_client(template.client)
        try:
            return not km.provisioner.forked and (await run(
                km, "import os, json; print(json.dumps(os.getppid()))")) == os.getpid()
        finally:
            await km.shutdown_kernel(now=True)

    assert asyncio.run(spawned_without_client())

    async def foreign_command() -> bool:
        km = AsyncKernelManager(kernel_name="python3")
        km.kernel_spec.argv = [sys.executable, "-c",
                               "from ipykernel import kernelapp as a; a.launch_new_instance()",
                               "-f", "{connection_file}"]
        km.kernel_id = str(uuid.uuid4())
        km.provisioner = ForkProvisioner(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec,
                                         parent=km, template_fd=0)
        await km.start_kernel(env=kernel_env(), cwd=str(tmp_path))
        try:
            return not km.provisioner.forked and await km.is_alive()
        finally:
            await km.shutdown_kernel(now=True)

    assert asyncio.run(foreign_command())


def test_a_dead_template_means_spawning_and_no_orphans(tmp_path, libdir):
    t = Template(tmp_path / "tpl", ["numpy"])
    install_client(t.client)
    try:
        async def scenario() -> tuple[int, bool, bool]:
            km = await start(tmp_path)
            pid = km.provisioner.pid
            assert km.provisioner.forked
            t.proc.kill()  # the template dies: its kernels with it (PR_SET_PDEATHSIG)
            t.proc.wait(10)
            deadline = time.monotonic() + 10
            while not gone(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # the client notices the closed channel on the loop
            dead = gone(pid)
            noticed = not await km.is_alive()
            await km.shutdown_kernel(now=True)
            km2 = await start(tmp_path)
            spawned = not km2.provisioner.forked
            await km2.shutdown_kernel(now=True)
            return pid, dead and noticed, spawned

        _pid, died, spawned = asyncio.run(scenario())
        assert died, "the forked kernel survived its template"
        assert spawned
    finally:
        install_client(None)
        t.stop()


def test_a_template_that_imports_a_thread_starter_does_not_fork(tmp_path, libdir):
    (libdir / "starts_thread.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    env = {"PYTHONPATH": os.pathsep.join([str(libdir), *sys.path[1:]])}
    t = Template(tmp_path / "tpl", ["starts_thread"], env=env)
    install_client(t.client)
    try:
        async def scenario() -> tuple[bool, dict[str, Any]]:
            km = await start(tmp_path)
            forked = km.provisioner.forked
            await km.shutdown_kernel(now=True)
            return forked, t.client.info or {}

        forked, info = asyncio.run(scenario())
        assert not forked
        assert info["fork_safe"] is False and "thread" in " ".join(info["reasons"])
    finally:
        install_client(None)
        t.stop()


def test_modules_looking_for_ipython_at_import_are_left_out(tmp_path, libdir):
    (libdir / "ipython_aware.py").write_text(
        "from IPython import get_ipython\nIN_KERNEL = get_ipython() is not None\n")
    env = {"PYTHONPATH": os.pathsep.join([str(libdir), *sys.path[1:]])}
    t = Template(tmp_path / "tpl", ["ipython_aware", "numpy"], env=env)
    install_client(t.client)
    try:
        async def scenario() -> tuple[bool, dict[str, Any], dict[str, Any]]:
            km = await start(tmp_path, {"PYTHONPATH": env["PYTHONPATH"]})
            probe = await run(km, "import json, ipython_aware, ipywidgets, sys\n"
                              "print(json.dumps({'in_kernel': ipython_aware.IN_KERNEL,"
                              " 'numpy': 'numpy' in sys.modules}))")
            forked = km.provisioner.forked
            await km.shutdown_kernel(now=True)
            return forked, probe, t.client.info or {}

        forked, probe, info = asyncio.run(scenario())
        assert forked and info["excluded"] == ["ipython_aware"]
        assert probe == {"in_kernel": True, "numpy": True}
    finally:
        install_client(None)
        t.stop()


def test_widgets_and_inline_figures_work_in_a_forked_kernel(template, tmp_path):
    """ipywidgets' comm target and matplotlib's inline figures, imported before IPython ran."""
    async def scenario() -> tuple[list[str], str]:
        km = await start(tmp_path)
        client = km.client()
        client.start_channels()
        types: list[str] = []
        try:
            code = ("import matplotlib.pyplot as plt, ipywidgets as w\n"
                    "from IPython.display import display\n"
                    "display(w.IntSlider(3))\nplt.plot([1, 2, 3])\n")
            await client.execute_interactive(
                code, timeout=60, output_hook=lambda m: types.extend(
                    (m["content"].get("data") or {}).keys()) if m["msg_type"] in (
                    "display_data", "execute_result") else None)
            reply = await run(km, "import json, comm; m = comm.get_comm_manager(); "
                              "print(json.dumps(sorted(m.targets)))")
        finally:
            client.stop_channels()
            await km.shutdown_kernel(now=True)
        return types, json.dumps(reply)

    types, targets = asyncio.run(scenario())
    assert "application/vnd.jupyter.widget-view+json" in types
    assert "image/png" in types, "a figure without plt.show() is not shown inline"
    assert "jupyter.widget" in targets


def test_forked_kernel_dies_with_the_process_that_holds_the_template(tmp_path):
    """A Voilà SIGKILLed: its template exits, and the template's kernels with it."""
    script = textwrap.dedent(f"""
        import asyncio, json, os, socket, sys
        sys.path.insert(0, {str(REPO)!r})
        from nbapps.runner.forkserver import TemplateConfig
        from nbapps.runner.launch import TEMPLATE_FD, start_template
        from nbapps.runner.provisioner import TemplateClient
        TemplateConfig(app_dir={str(tmp_path)!r}, preload=["numpy"]).dump(
            __import__("pathlib").Path({str(tmp_path / "t.json")!r}))
        start_template({str(tmp_path / "t.json")!r}, {str(tmp_path)!r})
        client = TemplateClient(socket.socket(fileno=TEMPLATE_FD))
        from jupyter_client.connect import write_connection_file
        async def main():
            pids = []
            for i in range(2):
                cf = os.path.join({str(tmp_path)!r}, f"k{{i}}.json")
                write_connection_file(cf)
                pids.append(await client.fork([sys.executable, "-m", "ipykernel_launcher",
                                               "-f", cf], dict(os.environ), {str(tmp_path)!r}))
            print(json.dumps({{"template": client.info["pid"], "kernels": pids}}), flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
    """)
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    pids: list[int] = []
    try:
        line = holder.stdout.readline()
        assert line, "the holder did not start its kernels"
        info = json.loads(line)
        pids = [info["template"], *info["kernels"]]
        assert not any(gone(p) for p in pids)
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        assert wait_until(lambda: all(gone(p) for p in pids), timeout=15), \
            [p for p in pids if not gone(p)]
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
