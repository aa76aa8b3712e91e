"""What the confined programs of the job pool share (the check program :mod:`.check`, the run
program :mod:`nbapps.runs.program`): how such a process ties itself to the gallery, writes its
artifacts, and ends without leaving anything running.

* :func:`skip_cloud_clients` before papermill is imported: these programs read and write local
  folders only, and papermill imports boto3 for its S3 handler whenever it is installed (the
  ``nbapps[s3]`` extra brings it): 0.1-0.4 s of CPU per program on this machine, paid by every
  run of a batch while both cores are busy;
* :func:`tie_to_parent` first thing: die with the gallery (``PR_SET_PDEATHSIG``) and adopt the
  processes the notebook leaves behind (child subreaper), so they stay in the tree the worker's
  hard kill finds;
* :func:`write_file` each artifact, complete or not at all (the worker reads it after the exit);
* :func:`kill_descendants` last thing: kernels and whatever they started;
* :func:`exit_now` instead of returning from ``__main__``: the artifacts are written and the
  tree is gone, so the interpreter's own teardown (module clean-up, zmq contexts; measured at
  0.3-0.5 s after a run) is skipped.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from pathlib import Path

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


#: modules the programs never need; papermill treats them as not installed
CLOUD_CLIENTS = ("boto3",)


def skip_cloud_clients() -> None:
    """Make :data:`CLOUD_CLIENTS` unimportable in this process (a ``None`` entry in
    ``sys.modules`` makes ``import`` raise ImportError, which papermill's optional handlers
    expect). Kernels are other processes: notebooks import them as usual."""
    for name in CLOUD_CLIENTS:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]


def tie_to_parent(parent: int | None) -> None:
    """Die with the gallery; adopt orphaned descendants (Linux; nothing elsewhere). Exits at
    once when ``parent`` (the gallery's pid) is already gone."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if parent is not None and os.getppid() != parent:  # the gallery died before the prctl
        os._exit(70)


def kill_descendants() -> None:
    """SIGKILL every descendant of this process (its kernels and what they started)."""
    import psutil

    from ..processes import kill_processes

    try:
        children = psutil.Process().children(recursive=True)
    except psutil.Error:
        return
    kill_processes(children, timeout=5.0)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` through a temporary name and a rename (no fsync: the worker reads the
    file on this machine right after the program ends, and a crash discards the job folder)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def exit_now(code: int) -> None:
    """Flush the standard streams (the job's log) and end the process with ``code``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


__all__ = ["exit_now", "kill_descendants", "tie_to_parent", "write_file"]
