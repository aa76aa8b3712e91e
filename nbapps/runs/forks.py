"""The gallery's side of the run zygote (:mod:`.zygote`): starting it, asking it for run
programs, and following them as :class:`subprocess.Popen` objects would be followed.

A :class:`Zygote` is owned by the run pool (:class:`.pool.RunPool`), started when runs are
first asked for (``c.NbappsServer.run_fork``, default on) and stopped with the pool or when
runs have not been asked for in ``spare_idle_seconds``. :meth:`Zygote.spawn` answers None
whenever the zygote cannot fork (not started, not fork-safe, dead, refused): the job then
spawns its program as before, so a zygote is only ever a shortcut.
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO, Any

from .. import sandbox
from ..processes import kill_process_tree
from ..runner.forkchannel import Message, dispatch, encode

log = logging.getLogger("nbapps.runs")

#: seconds the zygote may take for its imports before the pool gives up on it
READY_TIMEOUT = 60.0
#: seconds one fork request may take
FORK_TIMEOUT = 10.0


class ForkedProgram:
    """A run program forked by the zygote: what a job uses of :class:`subprocess.Popen`
    (``pid``, ``stdin``, ``poll``, ``wait``, ``returncode``). The zygote reaps it and sends
    its exit status, which arrives here through the pool's reader thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.stdin: IO[bytes] | None = None
        self.returncode: int | None = None
        self._done = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(f"run program {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def exited(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
        self._done.set()


class Zygote:
    """One started zygote process and the channel to it (thread-safe)."""

    def __init__(self, python: str | None, folder: Path, rules: sandbox.Plan | None) -> None:
        """Start it in ``folder`` (confined by ``rules`` when given);
        :meth:`wait_ready` tells whether it can fork."""
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        safe_path = ["-P"] if sys.version_info >= (3, 11) else []
        cmd = [python or sys.executable, *safe_path, "-m", "nbapps.runs.zygote",
               "--fd", str(theirs.fileno()), "--parent", str(os.getpid())]
        if rules is not None:
            cmd = sandbox.wrap(cmd, rules, python=python)
        folder.mkdir(parents=True, exist_ok=True)
        try:  # what it says itself (nothing, unless its imports fail) goes to the gallery's log
            self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd=str(folder),
                start_new_session=True,
                # debugpy (ipykernel's debugger, imported for the kernels) warns at import
                env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.confined = rules is not None
        self._lock = threading.Lock()  # one fork request at a time
        self._programs: dict[int, ForkedProgram] = {}
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ready: dict[str, Any] | None = None
        self._ready_event = threading.Event()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="nbapps-run-zygote",
                                        daemon=True)
        self._reader.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        """Whether the zygote has done its imports and may fork (waits up to ``timeout``)."""
        self._ready_event.wait(timeout)
        ready = self._ready
        if ready is not None and not ready.get("fork_safe"):
            log.warning("run zygote pid %s does not fork (%s): run programs are spawned",
                        self.pid, "; ".join(ready.get("reasons") or []))
        return bool(ready and ready.get("fork_safe")) and self.alive()

    def alive(self) -> bool:
        return not self._closed and self.proc.poll() is None

    def spawn(self, argv: list[str], *, cwd: Path, env: dict[str, str], log_path: Path,
              rules: sandbox.Plan | None, pipe_stdin: bool = False) -> ForkedProgram | None:
        """A run program forked with ``argv`` (the program's options), or None (spawn it)."""
        if not self._ready_event.is_set() and not self.wait_ready():
            return None
        if not (self._ready or {}).get("fork_safe") or not self.alive():
            return None
        request = {"op": "fork", "argv": argv, "cwd": str(cwd), "env": env,
                   "rules": None if rules is None else
                   {"read": rules.read, "list": rules.listable, "write": rules.write}}
        stdin_r, stdin_w = os.pipe() if pipe_stdin else (os.open(os.devnull, os.O_RDONLY), -1)
        try:
            with open(log_path, "ab") as log_file, self._lock:
                while not self._replies.empty():  # a late answer to a request that timed out
                    self._replies.get_nowait()
                socket.send_fds(self._sock, [encode(request)], [stdin_r, log_file.fileno()])
                reply = self._replies.get(timeout=FORK_TIMEOUT)
        except (OSError, queue.Empty) as exc:
            log.warning("run zygote pid %s: no fork (%s)", self.pid, exc)
            reply = None
        finally:
            os.close(stdin_r)
        if reply is None or "pid" not in reply:
            if stdin_w >= 0:
                os.close(stdin_w)
            if reply is not None:
                log.warning("run zygote pid %s refused a fork: %s", self.pid, reply.get("error"))
            return None
        program = reply["program"]
        if stdin_w >= 0:
            program.stdin = open(stdin_w, "wb")  # noqa: SIM115 - the job writes and closes it
        return program

    def _read(self) -> None:
        """The reader thread: the zygote's messages, until it has gone."""
        dispatch(self._sock, {"ready": self._got_ready, "forked": self._got_forked,
                              "exit": self._got_exit})
        # the zygote is gone: its programs died with it (parent-death signal)
        self._closed = True
        self._ready_event.set()
        self._replies.put(None)
        for program in list(self._programs.values()):
            program.exited(-9)
        self._programs.clear()

    def _got_ready(self, msg: Message) -> None:
        self._ready = msg
        self._ready_event.set()

    def _got_forked(self, msg: Message) -> None:
        if isinstance(msg.get("pid"), int):  # known before its exit can arrive
            msg["program"] = self._programs[msg["pid"]] = ForkedProgram(msg["pid"])
        self._replies.put(msg)

    def _got_exit(self, msg: Message) -> None:
        program = self._programs.pop(int(msg.get("pid") or 0), None)
        if program is not None:
            program.exited(int(msg.get("status", -9)))

    def stop(self, timeout: float = 5.0) -> None:
        """End the zygote and every program it forked."""
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_tree(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self._sock.close()
        self._reader.join(timeout=timeout)


def zygote_rules(data_dir: Path, runs_folder: Path, protect: list[str | Path],
                 python: str | None) -> sandbox.Plan:
    """The zygote's own Landlock layer: the runs folder (where every program's ``src`` and
    ``work`` are) and the temp folder (their TMPDIRs, made later) writable; the data dir
    otherwise protected (except where it lies in the temp folder: the whole temp folder must
    stay writable, as the programs' folders there do not exist yet). Each program adds its own,
    narrower layer, which protects the data dir wherever it is."""
    rules = sandbox.plan(read=[runs_folder], write=[runs_folder],
                         protect=[data_dir, *protect], python=python)
    return sandbox.Plan(read=rules.read, listable=rules.listable,
                        write=[*rules.write, tempfile.gettempdir()])


__all__ = ["ForkedProgram", "Zygote", "zygote_rules"]
