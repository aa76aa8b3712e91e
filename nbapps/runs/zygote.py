"""The run zygote: ``python -P -m nbapps.runs.zygote --fd N --parent PID``.

Every run program pays a Python start and the imports of nbformat, papermill, nbclient and
jupyter_client (~0.3 s of CPU of the 0.8 s a tiny run costs in a batch, stop 20): on two busy
cores that is what keeps a batch from using them for the notebooks. The run pool
(:class:`.forks.Zygote`) keeps this one process, which has done those imports once, and asks it
for each run program (spare or not) over a ``socketpair`` (one JSON message per datagram)::

    <- {"op": "ready", "seconds": 0.31, "fork_safe": true}            once, after the imports
    -> {"op": "fork", "argv": [...], "cwd": "...", "env": {...},
        "rules": {"read": [...], "list": [...], "write": [...]} | null}   + fds: stdin, log
    <- {"op": "forked", "pid": 4242}        or {"op": "forked", "error": "..."}
    <- {"op": "exit", "pid": 4242, "status": 0}                        reaped here

**Each child is set up as the spawned program would be** (:func:`become_program`): its own
session; stdin and stdout/stderr from the two descriptors the gallery passed (its job pipe or
/dev/null, its ``run.log``); its working folder and the exact environment the gallery computed;
:func:`nbapps.limits.apply_from_environment`; then its own Landlock layer with the rules the
gallery computed for that job (:func:`nbapps.sandbox.restrict`: its ``src`` read-only, its
``work`` and TMPDIR writable, the data dir protected) before any of its job's bytes are read;
then :func:`nbapps.runs.program.main` with ``--parent`` this process (``PR_SET_PDEATHSIG``:
a program dies with its zygote, which dies with the gallery). The notebook's kernel is started
by the program as before (a new process through the confined kernelspec), so nothing of one
run's execution is inherited by another.

**What the zygote holds is only code**: it imports modules and computes the interpreter's
import folders (:func:`nbapps.sandbox.python_paths`); it never reads a source, starts no
thread (checked: a second OS thread makes it refuse to fork, and runs are spawned), opens no
ZMQ context and runs no notebook. It is confined itself when runs are (its own layer: read and
write the runs folder, write the temp folder; the children narrow that to their job).
``random`` is reseeded in each child by CPython's at-fork hook; the ``str`` hash seed is
shared between siblings (no run depends on it).
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import sys
import tempfile
import time
from typing import Any

from nbapps.runner.forkchannel import ForkServer, fork_child, os_threads, reset_signals, send

_PR_SET_PDEATHSIG = 1
#: what every run program imports (its lazy imports included), done once here
WARM_MODULES = ("nbformat", "nbformat.v4", "papermill.engines", "papermill.parameterize",
                "nbclient", "nbclient.exceptions", "jupyter_client.manager",
                "jupyter_client.kernelspec", "jupyter_client.provisioning", "psutil",
                "nbapps.execute", "nbapps.notebook", "nbapps.record", "nbapps.findings",
                "nbapps.sandbox", "nbapps.limits", "nbapps.processes", "nbapps.jobs.check",
                "nbapps.runs.program", "nbapps.runs.kernels", "nbapps.runner.forkserver",
                "nbapps.runner.provisioner")


def warm_up() -> dict[str, Any]:
    """Import what run programs need; the ``ready`` message."""
    import importlib

    from nbapps.jobs.program import skip_cloud_clients

    started = time.perf_counter()
    skip_cloud_clients()
    failed = []
    for name in WARM_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the program imports it again and says why
            failed.append(f"{name}: {type(exc).__name__}")
    with contextlib.suppress(Exception):  # the kernels' imports, for their templates
        from nbapps.runner.forkserver import BASE_MODULES

        for name in BASE_MODULES:
            try:
                importlib.import_module(name)
            except Exception as exc:  # noqa: BLE001 - ipywidgets may be missing
                failed.append(f"{name}: {type(exc).__name__}")
    with contextlib.suppress(Exception):
        from jupyter_client.provisioning import KernelProvisionerFactory

        KernelProvisionerFactory.instance()  # the provisioners' entry points, read once
    with contextlib.suppress(Exception):
        from nbapps import sandbox

        sandbox.python_paths()  # a probe subprocess per program otherwise
    threads = os_threads()
    return {"op": "ready", "seconds": round(time.perf_counter() - started, 3),
            "failed": failed, "fork_safe": threads == 1,
            "reasons": [] if threads == 1 else [f"{threads} OS threads after the imports"]}


def become_program(req: dict[str, Any], fds: list[int], close: list[int]) -> int:
    """In the forked child: set up as the spawned program would be, then run it."""
    reset_signals()
    os.setsid()
    stdin_fd, log_fd = fds
    os.dup2(stdin_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in {stdin_fd, log_fd, *close}:
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.chdir(str(req["cwd"]))
    os.environ.clear()
    os.environ.update({str(k): str(v) for k, v in (req.get("env") or {}).items()})
    tempfile.tempdir = None  # TMPDIR is this job's
    from nbapps.limits import apply_from_environment

    apply_from_environment()
    rules = req.get("rules")
    if rules is not None:
        from nbapps import sandbox

        try:
            sandbox.restrict(rules.get("read") or [], rules.get("write") or [],
                             rules.get("list") or [])
        except OSError as exc:
            print(f"nbapps sandbox: not confined: {exc}", file=sys.stderr, flush=True)
            return 126
    from nbapps.runs import program

    argv = [str(a) for a in req.get("argv") or []]
    sys.argv = ["nbapps.runs.program", *argv]
    return program.main(argv)


class Zygote(ForkServer):
    """The serving loop (:class:`nbapps.runner.forkchannel.ForkServer`): forks a run program
    per request."""

    def handle(self, req: Any, fds: list[int]) -> dict[str, Any] | None:
        if not isinstance(req, dict):
            return {"op": "forked", "error": "not a JSON request"}
        return self.fork(req, fds) if req.get("op") == "fork" else None

    def fork(self, req: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if not self.fork_safe:
            return {"op": "forked", "error": "the zygote is not fork-safe"}
        if len(fds) != 2 or not isinstance(req.get("cwd"), str):
            return {"op": "forked", "error": "a fork request needs a cwd and two descriptors"}
        try:  # the child says why it failed in the job's log (its stderr by then)
            pid = fork_child(lambda: become_program(req, fds, self.inherited()), failed=70)
        except OSError as exc:
            return {"op": "forked", "error": f"fork: {exc}"}
        self.children.add(pid)
        return {"op": "forked", "pid": pid}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runs.zygote")
    parser.add_argument("--fd", type=int, required=True, help="our end of the socketpair")
    parser.add_argument("--parent", type=int, default=0, help="the gallery's pid")
    args = parser.parse_args(argv)
    parent = args.parent or os.getppid()
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        return 1
    sock = socket.socket(fileno=args.fd)
    zygote = Zygote(sock, parent)
    zygote.install_signals()
    ready = warm_up()
    zygote.fork_safe = bool(ready["fork_safe"])
    send(sock, ready)
    zygote.serve()
    return 0


if __name__ == "__main__":  # pragma: no cover - started by nbapps.runs.forks.Zygote
    sys.exit(main())
