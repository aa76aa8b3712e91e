"""The channel between a warm process that forks on request and its client, both ends.

Two pairs use it: a runner's kernel template (:mod:`.forkserver`) and Voilà's provisioner
(:mod:`.provisioner`); the run zygote (:mod:`nbapps.runs.zygote`) and the run pool
(:mod:`nbapps.runs.forks`). Each pair holds one ``SOCK_SEQPACKET`` socketpair and sends one JSON
object per datagram, each with an ``op`` (each pair's messages are listed in its forking side's
docstring). What both pairs share lives here: writing a message (:func:`send`); reading and
dispatching messages on the client's side (:func:`dispatch`, blocking or not); and on the
forking side, the serving loop (:class:`ForkServer`: requests, signals, reaping the children,
``exit`` messages) and the fork of a child that never returns to that loop (:func:`fork_child`).

The forking side imports this module before its warm-up, which must leave it single-threaded:
only the standard library is imported here, and nothing starts a thread.
"""
from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

#: the largest message (a fork request carries a whole environment)
MAX_MESSAGE = 1 << 20
#: descriptors one request may carry (the zygote's: the program's stdin and log)
MAX_FDS = 4
#: what the forking side handles (and its children set back to the defaults)
_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

Message = dict[str, Any]


def encode(msg: Message) -> bytes:
    """One message as the datagram that carries it."""
    return json.dumps(msg).encode("utf-8")


def send(sock: socket.socket, msg: Message) -> None:
    """One message to the other end (lost if it has gone)."""
    with contextlib.suppress(OSError):
        sock.send(encode(msg))


def dispatch(sock: socket.socket, handlers: Mapping[str, Callable[[Message], None]]) -> bool:
    """Read the messages waiting on ``sock`` and give each to the handler of its ``op``
    (other ops and malformed messages are dropped). True when a non-blocking ``sock`` has
    nothing more for now; False when the other end has gone (on a blocking ``sock``, the only
    way it returns)."""
    while True:
        got = _receive(sock)
        if got is None:
            return False
        if not got[0]:
            return True
        msg = _decode(got[0])
        handler = handlers.get(msg.get("op")) if isinstance(msg, dict) else None
        if handler is not None:
            handler(msg)


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[bytes, list[int]] | None:
    """The next datagram on ``sock`` and the descriptors it carries: None when the other end
    has gone, ``(b"", [])`` when nothing is waiting (a non-blocking ``sock``, a signal)."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, max_fds)
    except (BlockingIOError, InterruptedError):
        return b"", []
    except OSError:
        return None
    return (data, fds) if data else None


def _decode(data: bytes) -> Any:
    """A message (None if it is not JSON)."""
    try:
        return json.loads(data)
    except ValueError:
        return None


def os_threads() -> int:
    """The OS threads of this process (0 if unknown): a fork copies only the calling one."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 0


def flush_std() -> None:
    """Flush the standard streams (before a fork: what they hold would be written twice)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def fork_child(child: Callable[[], int], failed: int = 1) -> int:
    """Fork a process that runs ``child()`` and exits with the code it returns; its pid (raises
    OSError when it cannot fork).

    The standard streams are flushed first (or what they hold would be written twice). The
    child never returns into the caller's code: ``SystemExit`` gives its code; any other
    exception is printed to its stderr and it exits with ``failed``; it ends with
    :func:`os._exit` once its streams are flushed, so the parent's ``atexit`` handlers and the
    interpreter's teardown do not run there."""
    flush_std()
    pid = os.fork()
    if pid:
        return pid
    code = failed
    try:
        code = child()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - said in the child's stderr; never back to the caller
        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        flush_std()
        os._exit(code)


def reset_signals() -> None:
    """In a child of a :class:`ForkServer`: the default signal handlers and no wake-up fd,
    as a process of its own has."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(ValueError):
        signal.set_wakeup_fd(-1)


class ForkServer:
    """The serving loop of a process that forks children on request (single-threaded: no
    thread ever runs here).

    A subclass answers requests (:meth:`handle`), adds each child it forks to
    :attr:`children`, and may watch descriptors of its own (:meth:`watched`,
    :meth:`on_ready`) and clean up after a child (:meth:`child_exited`). The loop ends on
    SIGTERM, SIGHUP or SIGINT, when the parent has gone or when the client closes its end;
    the children are killed then."""

    def __init__(self, sock: socket.socket, parent: int) -> None:
        self.sock = sock
        self.parent = parent
        self.children: set[int] = set()
        self.fork_safe = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.stopping = False

    def handle(self, req: Any, fds: list[int]) -> Message | None:
        """The answer to one request (None: no answer); ``req`` is None when the datagram is
        not JSON. ``fds`` (passed with it) are closed afterwards."""
        raise NotImplementedError

    def watched(self) -> list[int]:
        """More descriptors to wait on (given to :meth:`on_ready` when readable)."""
        return []

    def on_ready(self, fd: int) -> None:
        """One of :meth:`watched` is readable."""

    def child_exited(self, pid: int) -> None:
        """Child ``pid`` has been reaped (before the client is told)."""

    def idle_after(self) -> float | None:
        """Seconds without any request or event after which :meth:`on_idle` is called (None:
        never)."""
        return None

    def on_idle(self) -> None:
        """Nothing happened for :meth:`idle_after` seconds."""

    def inherited(self) -> list[int]:
        """In a forked child: the loop's descriptors, to close (the socket is detached first,
        so that its object never closes the number again)."""
        return [self.sock.detach(), self.wake_r, self.wake_w]

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.stopping = True

    def install_signals(self) -> None:
        for sig in _SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.set_wakeup_fd(self.wake_w)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:
                self.children.discard(pid)
                self.child_exited(pid)
                send(self.sock, {"op": "exit", "pid": pid,
                                 "status": os.waitstatus_to_exitcode(status)})

    def stop_children(self, timeout: float = 5.0) -> None:
        for pid in list(self.children):
            with contextlib.suppress(OSError):  # each child leads a session of its own
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):  # (or will: it may not have got that far)
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)

    def serve(self) -> None:
        while not self.stopping and os.getppid() == self.parent:
            watched = self.watched()
            idle = self.idle_after()
            try:
                ready, _, _ = select.select([self.sock, self.wake_r, *watched], [], [],
                                            1.0 if idle is None else idle)
            except InterruptedError:
                continue
            if not ready and idle is not None:
                self.on_idle()
            for fd in ready:
                if fd in watched:
                    self.on_ready(fd)
            if self.wake_r in ready:
                with contextlib.suppress(OSError):
                    os.read(self.wake_r, 512)
            self.reap()
            if self.sock in ready and not self._answer():
                break  # the client's end is closed: it stopped us or is gone
        self.stop_children()

    def _answer(self) -> bool:
        """Answer the request waiting on the socket; False when the client has gone."""
        got = _receive(self.sock, MAX_FDS)
        if got is None:
            return False
        data, fds = got
        try:
            answer = self.handle(_decode(data), fds) if data else None
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if answer is not None:
            send(self.sock, answer)
        return True


__all__ = ["MAX_MESSAGE", "ForkServer", "Message", "dispatch", "encode", "flush_std",
           "fork_child", "os_threads", "reset_signals", "send"]
