"""The runner's kernel provisioner: kernels forked from the warm template, spawned as a fallback.

Registered as ``nbapps-fork`` in the ``jupyter_client.kernel_provisioners`` entry point group and
made the default of a runner's Voilà (``KernelProvisionerFactory.default_provisioner_name``), so
Voilà's kernel manager and its preheated pools use it without knowing: jupyter_client writes
each kernel's connection file (ports and HMAC key) as usual, then :meth:`launch_kernel` asks the
runner's template (:mod:`.forkserver`) for a process instead of starting one.

When forking is off, unavailable (no template, the template found its imports unsafe, it died)
or fails (the template's answer, a timeout), the kernel is spawned the normal way, with the same
limits (:mod:`nbapps.limits`): a cgroup leaf and rlimits put on it right after it starts, and
the same extra Landlock layer as a forked kernel (``spawn_prefix`` runs it through
``nbapps.sandbox``).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Float, Integer, List, Unicode

from .. import limits
from .forkchannel import Message, dispatch, encode

#: Where the runner's launcher puts Voilà's end of the template channel.
TEMPLATE_FD = 200


class ForkUnavailable(RuntimeError):
    """The template cannot fork kernels (not started, not fork-safe, gone)."""


class TemplateClient:
    """Voilà's end of the channel to the kernel template (one per process, event-loop bound)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.info: dict[str, Any] | None = None
        self.closed = False
        self._ids = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Event | None = None
        self._exits: dict[int, int] = {}
        # futures of the loop that waits (jupyter_server may shut kernels down in another one)
        self._exit_waiters: dict[int, list[asyncio.Future[int]]] = {}
        self._bound_waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._bound: set[int] = set()  # said "bound" before anyone waited for it
        self._live: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: the template's report of its libraries' warm-up (``op: warmed``), once it is done
        self.warmed: dict[str, Any] | None = None
        self._handlers = {"ready": self._got_ready, "forked": self._got_forked,
                          "bound": self._got_bound, "exit": self._got_exit,
                          "warmed": self._got_warmed}

    def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self._loop = loop
        self._ready = asyncio.Event()
        if self.info is not None or self.closed:
            self._ready.set()
        loop.add_reader(self.sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        if not dispatch(self.sock, self._handlers):
            self._lost()

    def _got_ready(self, msg: Message) -> None:
        self.info = msg
        if self._ready is not None:
            self._ready.set()

    def _got_warmed(self, msg: Message) -> None:
        self.warmed = msg
        if self.info is not None and not msg.get("fork_safe", True):
            self.info = {**self.info, "fork_safe": False,
                         "reasons": [*self.info.get("reasons", []), *msg.get("failed", [])]}

    def _got_forked(self, msg: Message) -> None:
        fut = self._pending.pop(int(msg.get("id", -1)), None)
        if fut is not None and not fut.done():
            fut.set_result(msg)

    def _got_bound(self, msg: Message) -> None:
        pid = int(msg["pid"])
        self._bound.add(pid)
        _wake(self._bound_waiters.pop(pid, []), None)

    def _got_exit(self, msg: Message) -> None:
        self._exited(int(msg["pid"]), int(msg.get("status", 0)))

    def _exited(self, pid: int, status: int) -> None:
        self._live.discard(pid)
        self._bound.discard(pid)
        self._exits[pid] = status
        _wake(self._bound_waiters.pop(pid, []), None)
        _wake(self._exit_waiters.pop(pid, []), status)

    def _lost(self) -> None:
        """The template is gone: its kernels died with it (PR_SET_PDEATHSIG); make sure."""
        if self.closed:
            return
        self.closed = True
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ForkUnavailable("the kernel template has exited"))
        self._pending.clear()
        for pid in list(self._live):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            self._exited(pid, -signal.SIGKILL)
        if self._ready is not None:
            self._ready.set()

    async def wait_ready(self, timeout: float) -> dict[str, Any]:
        self._attach()
        assert self._ready is not None
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise ForkUnavailable(f"the kernel template was not ready within {timeout:.0f}s")\
                from None
        if self.closed or self.info is None:
            raise ForkUnavailable("the kernel template has exited")
        if not self.info.get("fork_safe"):
            reasons = "; ".join(self.info.get("reasons") or []) or "not fork-safe"
            raise ForkUnavailable(f"the kernel template does not fork: {reasons}")
        return self.info

    async def fork(self, argv: list[str], env: dict[str, str], cwd: str,
                   timeout: float = 60.0, log: str | None = None) -> int:
        """A new kernel process forked from the template; its pid. ``log``: a file its
        stdout and stderr go to (else the template's)."""
        await self.wait_ready(timeout)
        assert self._loop is not None
        self._ids += 1
        rid = self._ids
        fut: asyncio.Future[dict[str, Any]] = self._loop.create_future()
        self._pending[rid] = fut
        data = encode({"op": "fork", "id": rid, "argv": list(argv), "env": dict(env),
                       "cwd": cwd, "log": log})
        try:
            await self._loop.sock_sendall(self.sock, data)
            reply = await asyncio.wait_for(fut, timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            self._pending.pop(rid, None)
            raise ForkUnavailable(f"no answer from the kernel template: {exc!r}") from None
        if "pid" not in reply:
            raise ForkUnavailable(str(reply.get("error") or "the template could not fork"))
        pid = int(reply["pid"])
        self._live.add(pid)
        return pid

    async def wait_bound(self, pid: int, timeout: float) -> bool:
        """Wait until kernel ``pid`` listens on its ports (or died); False on timeout.

        A client that connects before the kernel binds is retried by ZeroMQ only after its
        reconnect interval (100 ms), which would be most of a forked kernel's start."""
        self._on_readable()  # it may have said so already
        if pid in self._exits or pid in self._bound:
            self._bound.discard(pid)
            return True
        self._attach()
        assert self._loop is not None
        fut: asyncio.Future[None] = self._loop.create_future()
        self._bound_waiters.setdefault(pid, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._bound.discard(pid)

    def exit_status(self, pid: int) -> int | None:
        """``pid``'s exit status if it has exited. Reads what the channel holds first, so that
        it is right even when no event loop runs our reader (jupyter_server may shut kernels
        down from another loop, or none, at exit)."""
        if not self.closed:
            self._on_readable()
        return self._exits.get(pid)

    async def wait_exit(self, pid: int) -> int:
        if pid in self._exits:
            return self._exits[pid]
        self._attach()
        assert self._loop is not None
        fut: asyncio.Future[int] = self._loop.create_future()
        self._exit_waiters.setdefault(pid, []).append(fut)
        return await fut

    def forget(self, pid: int) -> None:
        self._exits.pop(pid, None)
        self._exit_waiters.pop(pid, None)


def _wake(futures: list[asyncio.Future[Any]], value: Any) -> None:
    for fut in futures:
        if not fut.done() and not fut.get_loop().is_closed():
            with contextlib.suppress(RuntimeError):
                fut.set_result(value)


_CLIENT: TemplateClient | None = None
#: reasons for spawning already logged as warnings (each is said once per runner)
_SAID: set[str] = set()


def install_client(client: TemplateClient | None) -> None:
    """Use ``client`` for every fork of this process (tests; the runner uses the fd)."""
    global _CLIENT
    _CLIENT = client


def template_client(fd: int) -> TemplateClient | None:
    """This process's template client, made from the inherited ``fd`` on first use."""
    global _CLIENT
    if _CLIENT is None and fd >= 0:
        try:
            sock = socket.socket(fileno=fd)
            os.set_inheritable(fd, False)
        except OSError:
            return None
        _CLIENT = TemplateClient(sock)
    if _CLIENT is not None and _CLIENT.closed:
        return None
    return _CLIENT


class ForkedKernel:
    """What jupyter_client expects of ``provisioner.process`` (``Popen``-like), for a fork."""

    stdin = stdout = stderr = None

    def __init__(self, client: TemplateClient, pid: int) -> None:
        self.client = client
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.client.exit_status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # like Popen: a process that is already gone is not an error
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _log_file(kwargs: dict[str, Any]) -> str:
    """The file a kernel's stdout and stderr are asked to go to (``stdout`` a file opened
    by name, ``stderr`` the same or ``STDOUT``, no ``stdin``), else ''."""
    import subprocess

    out = kwargs.get("stdout")
    name = getattr(out, "name", None)
    if "stdin" in kwargs or not isinstance(name, str) or not os.path.isabs(name):
        return ""
    err = kwargs.get("stderr", subprocess.STDOUT)
    return name if err in (subprocess.STDOUT, out) else ""


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """A :class:`LocalProvisioner` that forks kernels from the runner's template."""

    template_fd = Integer(
        -1, config=True,
        help="File descriptor of the channel to the kernel template (-1: never fork).")
    fork_timeout = Float(
        60.0, config=True,
        help="Seconds a kernel start waits for the template (still importing, say) before the "
             "kernel is spawned instead.")
    kernel_limits = Unicode(
        "", config=True, help="Limits of spawned kernels: nbapps.limits.KernelLimits as JSON.")
    spawn_prefix = List(
        Unicode(), config=True,
        help="Command put before a spawned kernel's (its own Landlock layer, as forks have).")
    kernel_arguments = List(
        Unicode(), config=True,
        help="Arguments added to an ipykernel's command line, forked or spawned.")

    forked = False
    _leaf: list[Any] = []

    def _limits(self) -> limits.KernelLimits:
        if not self.kernel_limits:
            return limits.KernelLimits()
        return limits.KernelLimits.from_dict(json.loads(self.kernel_limits))

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        if "ipykernel_launcher" in cmd[1:3]:
            cmd = [*cmd, *self.kernel_arguments]
        client = template_client(self.template_fd)
        log = _log_file(kwargs)
        if client is not None and cmd[1:3] == ["-m", "ipykernel_launcher"] \
                and (log or not {"stdin", "stdout", "stderr"} & set(kwargs)):
            env = kwargs.get("env") or dict(os.environ)
            cwd = str(kwargs.get("cwd") or os.getcwd())
            try:
                pid = await client.fork(cmd, env, cwd, timeout=self.fork_timeout,
                                        log=log or None)
                await client.wait_bound(pid, timeout=self.fork_timeout)
            except ForkUnavailable as exc:
                reason = str(exc)
                level = logging.DEBUG if reason in _SAID else logging.WARNING
                _SAID.add(reason)
                self.log.log(level, "kernel %s: spawned, not forked: %s", self.kernel_id, reason)
            else:
                self.process = ForkedKernel(client, pid)
                self.pid = self.pgid = pid
                self.cwd = cwd
                self.forked = True
                return self.connection_info
        info = await super().launch_kernel([*self.spawn_prefix, *cmd], **kwargs)
        self.forked = False
        self._confine_spawned()
        return info

    def _confine_spawned(self) -> None:
        kl = self._limits()
        if self.pid is None or (kl.cgroup is None and not limits.kernel_rlimits(kl)):
            return
        try:
            self._leaf = limits.confine_kernel(kl, f"s{self.pid}", self.pid)
        except OSError as exc:
            self.log.warning("kernel %s: limits not applied: %s", self.kernel_id, exc)

    async def wait(self) -> int | None:
        process = self.process
        if isinstance(process, ForkedKernel):
            status = await process.client.wait_exit(process.pid)
            process.client.forget(process.pid)
            self.process = None
            return status
        return await super().wait()

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart=restart)
        if self._leaf:
            leaf, self._leaf = self._leaf, []
            await asyncio.get_running_loop().run_in_executor(None, limits.release_cgroup, leaf)

    async def get_provisioner_info(self) -> dict[str, Any]:
        info = await super().get_provisioner_info()
        info["forked"] = self.forked
        return dict(info)
