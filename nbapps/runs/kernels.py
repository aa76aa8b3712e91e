"""Kernels of a run program forked from the run zygote: forked from a kernel template of its own.

A spawned kernel costs its run a Python start and ipykernel's imports (~0.25 s of CPU of the
0.45 s a tiny run costs in a batch once the program itself is forked, stop 21). The zygote
(:mod:`.zygote`) has imported ipykernel too, so a program forked from it starts, first thing
(single-threaded, no ZMQ context, no event loop yet), a child that serves as its kernel
template: the app runners' template (:mod:`nbapps.runner.forkserver`) with the run's working
folder and, when the run is confined, the Landlock layer its spawned kernels get (write only
its TMPDIR; read the system and the Python; :func:`nbapps.sandbox.plan`). Its kernelspecs then
name the ``nbapps-fork`` provisioner (:func:`nbapps.jobs.check.confine_kernels`), which asks the
template over :data:`nbapps.runner.provisioner.TEMPLATE_FD` and spawns the confined kernel as
before when the template cannot fork.

The template is the program's child: it dies with it (``PR_SET_PDEATHSIG``) and is in the tree
the program kills before it exits, kernels included (the template adopts their orphans). Each
forked kernel gets what the app runners' forked kernels get: its own session, connection file,
HMAC key, environment, working folder and random state (see the forkserver's docstring).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path


def fork_template(workdir: Path, tmp: Path, *, confined: bool) -> int | None:
    """Fork the kernel template, its channel on the provisioner's fd; its pid (None: kernels
    are spawned)."""
    from .. import sandbox
    from ..runner import forkserver
    from ..runner.forkchannel import fork_child, send
    from ..runner.provisioner import TEMPLATE_FD

    if "ipykernel.kernelapp" not in sys.modules:  # not a forked program: nothing to gain
        return None
    config = forkserver.TemplateConfig(app_dir=str(workdir))
    if confined:
        rules = sandbox.plan(read=[], write=[tmp])
        config.kernel_read, config.kernel_list = rules.read, rules.listable
        config.kernel_write = rules.write
    workdir.mkdir(parents=True, exist_ok=True)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent = os.getpid()

    def serve() -> int:  # in the template (what goes wrong is said in the run's log)
        ours.close()
        if not forkserver.tie_to(parent):
            return 1
        template, ready = forkserver.prepare(theirs, config, parent)
        template.fork_safe = bool(ready["fork_safe"])
        send(theirs, ready)
        template.serve()
        return 0

    try:
        pid = fork_child(serve)
    except OSError as exc:
        print(f"nbapps run: no kernel template: {exc}", file=sys.stderr, flush=True)
        ours.close()
        theirs.close()
        return None
    theirs.close()
    os.dup2(ours.fileno(), TEMPLATE_FD)
    os.set_inheritable(TEMPLATE_FD, False)  # the kernels spawned as a fallback do not get it
    ours.close()
    return pid


__all__ = ["fork_template"]
