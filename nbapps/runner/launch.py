"""The runner's launcher: the runner's OS bounds, its kernel template, then Voilà.

    python -m nbapps.runner.launch [--template CONFIG] --runner-dir DIR -- python -m voila ...

It runs as the runner process itself (it ends by ``exec``-ing Voilà, so the pid stays), inside
the Landlock sandbox when the runner is confined (``python -m nbapps.sandbox ... -- python -m
nbapps.runner.launch ...``; the sandbox launcher applies :mod:`nbapps.limits`' runner bounds
before it confines itself, this one does when there is no sandbox):

1. :func:`nbapps.limits.apply_from_environment` (a no-op when the sandbox launcher did it);
2. with ``--template``: a ``socketpair``, one end kept on fd :data:`TEMPLATE_FD` for Voilà's
   kernel provisioner, the other given to a new ``python -m nbapps.runner.forkserver``: the
   kernel template starts importing now, while Voilà starts, and it is Voilà's child, so it
   ends with it;
3. ``exec`` of the command (Voilà).

Kept small and light on imports: every runner start pays for it.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys

#: fd of Voilà's end of the template channel (nbapps.runner.provisioner.ForkProvisioner)
TEMPLATE_FD = 200


def start_template(config: str, runner_dir: str) -> None:
    """Start the kernel template with one end of a new channel; keep the other on TEMPLATE_FD."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    os.dup2(ours.fileno(), TEMPLATE_FD)  # inheritable: Voilà gets it through exec
    ours.close()
    subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "nbapps.runner.forkserver", "--fd", str(theirs.fileno()),
         "--config", config, "--runner-dir", runner_dir, "--parent", str(os.getpid())],
        pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
    theirs.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runner.launch")
    parser.add_argument("--template", default="", help="kernel template config (JSON file)")
    parser.add_argument("--runner-dir", default="", help="the runner's folder")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        parser.error("no command given (put it after --)")
    from nbapps.limits import apply_from_environment

    apply_from_environment()
    if args.template:
        try:
            start_template(args.template, args.runner_dir)
        except OSError as exc:  # Voilà then spawns every kernel
            print(f"nbapps launch: no kernel template: {exc}", file=sys.stderr, flush=True)
    os.execvp(cmd[0], cmd)
    return 127  # pragma: no cover - execvp does not return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
