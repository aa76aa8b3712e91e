"""The kernel template of a runner: a warm process that new kernels are forked from.

Starting a kernel the usual way pays a Python start, ipykernel's imports and the app's imports
(about 1.5 s with pandas and matplotlib on this 2-core machine); forking a process that has
already imported them pays a few milliseconds. The runner's launcher (:mod:`.launch`) starts
this process inside the runner's sandbox and cgroup, before Voilà exists, with one end of a
``socketpair``; Voilà's kernel provisioner (:mod:`.provisioner`) holds the other end and asks
for kernels over it (JSON messages, one per datagram)::

    -> {"op": "fork", "id": 7, "argv": [...], "env": {...}, "cwd": "...", "log": null}
    <- {"op": "forked", "id": 7, "pid": 4242}      or {"op": "forked", "id": 7, "error": "..."}
    <- {"op": "bound", "pid": 4242}                 its sockets are listening (clients may connect)
    <- {"op": "exit", "pid": 4242, "status": 0}     when a kernel has exited (reaped here)
    <- {"op": "ready", "modules": [...], "fork_safe": true, ...}   once, after the imports
    <- {"op": "warmed", "warmed": [...], "failed": [...], "fork_safe": true}   once, later

**What is done ahead, and why no further.** The template imports ipykernel (and IPython, zmq,
tornado, comm), ipywidgets, and the modules the app notebook imports *before it runs any code
of its own*: the leading import statements (``%matplotlib`` magics, docstrings and plain
literal assignments such as the ``parameters`` cell may come between them), see
:func:`nbapps.runner.notebook_variants.template_imports`. Importing those first is what the
kernel would do first anyway. It never runs app statements: their results could differ per
viewer (random draws, the time, files and data read "now"), could hold what cannot be shared by
forking (open files, sockets, database connections, threads), and could change how later imports
behave (``os.environ``, ``sys.path``, ``matplotlib.use``). App modules that live in the bundle
itself are not imported either (that would run app code). A library that starts a Python thread
at import makes the template refuse to fork (kernels are then spawned); one that looks for a
running IPython at import (``get_ipython()``) would behave differently once a kernel runs, so
the template starts again without it (ipywidgets and matplotlib_inline are known and are hooked
up again in each kernel instead). At its first quiet moment after ``ready`` the template also
does the one-time work of IPython's cell reader, matplotlib and pandas (a cell transformed, a
figure drawn off pyplot, a table formatted: :mod:`.library_warmup`), which touches no state an
app could see.

**What every forked kernel gets, as a spawned one would**: its own session and process group;
the connection file (ports, HMAC key) its kernel manager wrote; the environment and working
folder it was asked for; fresh random state (``random``, ``numpy.random`` and every
``random.Random`` / numpy generator created during the imports are reseeded from the OS);
only its own ``atexit`` handlers; its cgroup leaf and rlimits (:mod:`nbapps.limits`); and,
when the runner is sandboxed, one more Landlock layer that drops the template's right to write
below the runner's cgroup. It dies with the template (``PR_SET_PDEATHSIG`` and ipykernel's
parent poller), and the template dies with Voilà, so nothing outlives the runner.

Not the same as a spawned kernel: siblings share the template's ``str`` hash seed (Python picks
it at start-up), and a module that captured the time at import sees the template's start.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import library_warmup
from .forkchannel import ForkServer, flush_std, os_threads, reset_signals, send

#: ipykernel and the pieces every app kernel needs (imported first, always); the second line
#: is what a kernel's start-up imports lazily (debugpy alone is 0.4 s; psutil, for the local
#: addresses of the connection set-up, 6 ms of every kernel's 30 ms ``initialize``)
BASE_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "comm",
                "ipywidgets",
                "ipykernel.debugger", "IPython.core.completerlib", "IPython.core.debugger",
                "IPython.core.oinspect", "IPython.extensions.storemagic",
                "IPython.utils.wildcard", "IPython.core.logger", "pdb",
                "tornado.platform.asyncio", "psutil")
#: seconds of quiet after the ``ready`` message before the libraries' one-time work is done
WARM_UP_AFTER = 0.1
#: what a kernel imports lazily the first time it uses a preloaded module (its first figure, its
#: first DataFrame shown): library modules, imported after their parent when it is preloaded
COMPANIONS = {
    "matplotlib.pyplot": ("matplotlib.backends.backend_agg", "matplotlib_inline.backend_inline",
                          "IPython.core.pylabtools", "IPython.core.magics.pylab"),
    "pandas": ("pandas.io.formats.html", "pandas.io.formats.string"),
}
#: modules that look for a running IPython when imported, and how to catch them up in a kernel
REHOOKS = {
    "ipywidgets": "_handle_ipython",
    "matplotlib_inline.backend_inline": "_enable_matplotlib_integration",
}
#: callers of get_ipython() at import time that need no catching up
_IPYTHON_AWARE_OK = ("IPython", "ipykernel", "ipywidgets", "matplotlib_inline", "comm",
                     "jupyter_client", "traitlets", "nbapps")
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36

def _launcher_path() -> str:
    import importlib.util

    with contextlib.suppress(ImportError, ValueError):
        spec = importlib.util.find_spec("ipykernel_launcher")
        return (spec.origin or "") if spec else ""
    return ""


_LAUNCHER = ""


@dataclass
class TemplateConfig:
    """What the template needs to know (written to JSON by the runner)."""

    #: the app folder: working folder of the template and default for kernels
    app_dir: str
    #: modules to import after :data:`BASE_MODULES`
    preload: list[str] = field(default_factory=list)
    #: kernel limits, :class:`nbapps.limits.KernelLimits` as a dict
    kernel_limits: dict[str, Any] = field(default_factory=dict)
    #: write folders of a forked kernel's own Landlock layer (None: add no layer)
    kernel_write: list[str] | None = None
    #: read folders of that layer (None: everything the template may read)
    kernel_read: list[str] | None = None
    #: folders whose names that layer may list (with ``kernel_read``)
    kernel_list: list[str] = field(default_factory=list)
    #: top-level modules not to import (found to look for IPython at import)
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str) -> TemplateConfig:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__), encoding="utf-8")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


# -- warming up ---------------------------------------------------------------------------------
class _IPythonWatch:
    """Records which modules call ``get_ipython()`` while the template imports.

    The wrapper replaces IPython's function for good (modules keep a reference to it), so it
    must behave exactly like the original; it only records while ``active``.
    """

    def __init__(self) -> None:
        self.callers: set[str] = set()
        self.active = False

    def install(self) -> None:
        import IPython
        import IPython.core.getipython as getipython

        original = getipython.get_ipython

        def get_ipython() -> Any:
            if self.active:
                caller = sys._getframe(1).f_globals.get("__name__", "?")
                self.callers.add(str(caller))
            return original()

        get_ipython.__doc__ = original.__doc__
        getipython.get_ipython = get_ipython  # type: ignore[assignment]
        IPython.get_ipython = get_ipython  # type: ignore[attr-defined]

    def sensitive(self) -> set[str]:
        """Top-level packages that looked for IPython at import and are not handled."""
        out = set()
        for name in self.callers:
            top = name.split(".")[0]
            if top not in _IPYTHON_AWARE_OK:
                out.add(top)
        return out


def _local(name: str, app_dir: str) -> bool:
    """Whether module ``name`` would be found in the app folder (app code: never preloaded)."""
    import importlib.util

    top = name.split(".")[0]
    for suffix in ("", ".py"):
        if os.path.exists(os.path.join(app_dir, top + suffix)):
            return True
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return True
    if spec is None:
        return True
    origin = spec.origin or ""
    return origin.startswith(app_dir.rstrip("/") + "/")


def warm_up(config: TemplateConfig) -> tuple[dict[str, Any], list[Any]]:
    """Import what kernels need; the ``ready`` message and the random generators to reseed."""
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    watch = _IPythonWatch()
    imported, failed, skipped = [], [], []
    t0 = time.perf_counter()
    with contextlib.suppress(ImportError):
        watch.install()
    for name in BASE_MODULES:
        try:
            __import__(name)
            imported.append(name)
        except Exception as exc:  # an optional piece (ipywidgets) may be missing
            failed.append(f"{name}: {exc}")
    with contextlib.suppress(Exception):  # read once here, not in every kernel
        from jupyter_client import localinterfaces

        localinterfaces.local_ips()
    watch.active = True
    preload = list(config.preload)
    for parent, companions in COMPANIONS.items():
        if parent in preload:
            preload += [c for c in companions if c not in preload]
    if "pandas" in preload and "matplotlib.pyplot" in preload:
        preload.append("pandas.plotting._matplotlib")
    for name in preload:
        if name in sys.modules:
            continue
        if name.split(".")[0] in config.exclude or _local(name, config.app_dir):
            skipped.append(name)
            continue
        try:
            __import__(name)
            imported.append(name)
        except BaseException as exc:  # noqa: BLE001 - the kernel reports it when it imports
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
    watch.active = False
    reasons = []
    if threading.active_count() > 1:
        names = sorted(t.name for t in threading.enumerate() if t is not threading.main_thread())
        reasons.append(f"an import started Python threads ({', '.join(names)})")
    gc.collect()
    generators = _random_generators()  # before freezing: frozen objects are not listed
    gc.freeze()  # forked kernels then do not copy the template's objects when they collect
    return {
        "op": "ready", "modules": imported, "failed": failed, "skipped": skipped,
        "fork_safe": not reasons, "reasons": reasons, "ipython_sensitive":
        sorted(watch.sensitive()), "os_threads": os_threads(),
        "seconds": round(time.perf_counter() - t0, 3), "pid": os.getpid(),
    }, generators


def _random_generators() -> list[Any]:
    """Every random generator object alive after the imports (reseeded in each kernel)."""
    import random

    kinds: list[type] = [random.Random]
    np = sys.modules.get("numpy")
    if np is not None:
        kinds += [np.random.RandomState, np.random.Generator]
    found = [o for o in gc.get_objects() if isinstance(o, tuple(kinds))]
    return [o for o in found if not isinstance(o, random.SystemRandom)]


def reseed(generators: list[Any]) -> None:
    """Fresh OS entropy for the global and the import-time random generators."""
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()
    reseedable = (random.Random, np.random.RandomState) if np is not None else (random.Random,)
    for gen in generators:
        if isinstance(gen, reseedable):
            gen.seed()
        elif np is not None and isinstance(gen, np.random.Generator):
            bitgen = gen.bit_generator
            bitgen.state = type(bitgen)().state


# -- one kernel (in the forked child) -----------------------------------------------------------
def _become_kernel(req: dict[str, Any], config: TemplateConfig, generators: list[Any],
                   close: list[int], status_fd: int) -> int:
    """Set the child up as a spawned kernel would be, report ``ok`` and run the kernel."""
    template_pid = os.getppid()
    reset_signals()
    os.setsid()
    _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != template_pid:
        return 1
    for fd in close:
        with contextlib.suppress(OSError):
            os.close(fd)
    log = req.get("log")
    if isinstance(log, str) and log:  # opened before the kernel's own layer may forbid it
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    from nbapps import limits

    kernel_limits = limits.KernelLimits.from_dict(config.kernel_limits)
    limits.confine_kernel(kernel_limits, f"k{os.getpid()}")
    if config.kernel_write is not None:
        from nbapps import sandbox

        sandbox.restrict(config.kernel_read or ["/"], config.kernel_write, config.kernel_list)
    cwd = str(req.get("cwd") or config.app_dir)
    os.chdir(cwd)
    env = {str(k): str(v) for k, v in (req.get("env") or {}).items()}
    env["JPY_PARENT_PID"] = str(template_pid)
    os.environ.clear()
    os.environ.update(env)
    argv = [str(a) for a in req["argv"]]
    sys.argv = [_LAUNCHER or argv[0], *argv[3:]]
    sys.path.insert(0, cwd)
    reseed(generators)
    atexit._clear()  # the template's handlers are not this kernel's (they may clean shared state)
    os.write(status_fd, b"ok")

    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize([*argv[3:], f"--IPKernelApp.parent_handle={template_pid}"])
    for module, hook in REHOOKS.items():  # imported before IPython ran: catch them up
        mod = sys.modules.get(module)
        if mod is not None and hasattr(mod, hook):
            with contextlib.suppress(Exception):
                getattr(mod, hook)()
    with contextlib.suppress(OSError):  # clients connecting now find the sockets bound
        os.write(status_fd, b"bound")
        os.close(status_fd)
    app.start()
    return 0


def forkable(argv: list[str]) -> bool:
    """Whether the kernel command is ``<this python> -m ipykernel_launcher ...``."""
    if len(argv) < 3 or argv[1:3] != ["-m", "ipykernel_launcher"]:
        return False
    with contextlib.suppress(OSError):
        return os.path.samefile(argv[0], sys.executable) or \
            os.path.realpath(argv[0]) == os.path.realpath(sys.executable)
    return False


class Template(ForkServer):
    """The template's serving loop (:class:`.forkchannel.ForkServer`): forks a kernel per
    request; its :attr:`children` are the kernels."""

    def __init__(self, sock: socket.socket, config: TemplateConfig, parent: int) -> None:
        super().__init__(sock, parent)
        self.config = config
        self.generators: list[Any] = []
        #: status pipes of kernels that have not said "bound" yet: fd -> pid
        self.binding: dict[int, int] = {}
        #: the libraries' one-time work (:mod:`.library_warmup`) is still to do
        self.warm_up_pending = True

    def handle(self, req: Any, fds: list[int]) -> dict[str, Any] | None:
        return self.fork(req) if isinstance(req, dict) and req.get("op") == "fork" else None

    def idle_after(self) -> float | None:
        return WARM_UP_AFTER if self.warm_up_pending and self.fork_safe else None

    def on_idle(self) -> None:
        """Do the libraries' one-time work at the first quiet moment after the ``ready``
        message. Not before it: at a cold start each pool's first kernel is forked at once and
        the viewer waits for it; the warm-up (60 ms for matplotlib) then runs while those
        kernels run the notebook, and serves every later kernel (15 ms less each)."""
        self.warm_up_pending = False
        t0 = time.perf_counter()
        warmed, failed = library_warmup.warm_libraries()
        if threading.active_count() > 1:
            self.fork_safe = False
            failed.append("the warm-up started Python threads: kernels are spawned from now on")
        self.generators += [gen for gen in _random_generators()
                            if not any(gen is known for known in self.generators)]
        gc.freeze()
        with contextlib.suppress(OSError):
            send(self.sock, {"op": "warmed", "warmed": warmed, "failed": failed,
                             "fork_safe": self.fork_safe,
                             "seconds": round(time.perf_counter() - t0, 3)})
        if warmed or failed:
            print(f"[nbapps template] warmed {', '.join(warmed) or 'nothing'} in "
                  f"{time.perf_counter() - t0:.2f}s{'; ' if failed else ''}{'; '.join(failed)}",
                  file=sys.stderr, flush=True)

    def fork(self, req: dict[str, Any]) -> dict[str, Any]:
        rid = req.get("id")
        argv = req.get("argv") or []
        if not self.fork_safe:
            return {"op": "forked", "id": rid, "error": "the template is not fork-safe"}
        if not forkable(argv):
            return {"op": "forked", "id": rid, "error": "not an ipykernel of this Python"}
        status_r, status_w = os.pipe()
        flush_std()
        try:
            pid = os.fork()
        except OSError as exc:
            os.close(status_r)
            os.close(status_w)
            return {"op": "forked", "id": rid, "error": f"fork: {exc}"}
        if pid == 0:  # the new kernel
            code = 1
            try:
                os.close(status_r)
                close = [*self.inherited(), *self.binding]
                code = _become_kernel(req, self.config, self.generators, close, status_w)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - report and leave: never back to the loop
                with contextlib.suppress(OSError):
                    os.write(status_w, traceback.format_exc()[-2000:].encode())
            finally:
                with contextlib.suppress(Exception):
                    atexit._run_exitfuncs()
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(status_w)
        answer = self._read_status(status_r, timeout=30.0)
        if answer == "ok":
            self.children.add(pid)
            self.binding[status_r] = pid
            return {"op": "forked", "id": rid, "pid": pid}
        os.close(status_r)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        self._release_leaf(pid)
        return {"op": "forked", "id": rid, "error": answer or "the new kernel died at set-up"}

    @staticmethod
    def _read_status(fd: int, timeout: float) -> str:
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                break
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            if data == b"ok":
                break
        return data.decode("utf-8", "replace")

    def watched(self) -> list[int]:
        return list(self.binding)

    def on_ready(self, fd: int) -> None:
        """A kernel's status pipe is readable: it said "bound" (or died)."""
        pid = self.binding.pop(fd)
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        os.close(fd)
        if data.startswith(b"bound"):
            send(self.sock, {"op": "bound", "pid": pid})

    def _release_leaf(self, pid: int) -> None:
        from nbapps import limits

        kl = limits.KernelLimits.from_dict(self.config.kernel_limits)
        if kl.cgroup is not None:
            folders = sorted(set(limits.kernel_leaf(kl.cgroup, f"k{pid}").values()))
            with contextlib.suppress(OSError):
                limits.release_cgroup(folders)

    def child_exited(self, pid: int) -> None:
        with contextlib.suppress(OSError):  # what the kernel started goes with it
            os.killpg(pid, signal.SIGKILL)
        self._release_leaf(pid)


def tie_to(parent: int) -> bool:
    """Die with ``parent`` and adopt the kernels' orphans; False when it is already gone.
    A process group of our own: a runner's SIGTERM goes to Voilà, which shuts its kernels
    down properly; we follow when Voilà has gone (the parent-death signal, the ppid check)."""
    libc = _libc()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of kernels come back to us
    if os.getppid() != parent:
        return False
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    return True


def prepare(sock: socket.socket, config: TemplateConfig, parent: int
            ) -> tuple[Template, dict[str, Any]]:
    """The template, its signals installed and its imports done (its ``ready`` message not
    sent yet, its ``fork_safe`` not set: the caller decides)."""
    global _LAUNCHER
    _LAUNCHER = _launcher_path()
    from nbapps import limits, sandbox  # noqa: F401 - kernels use them right after the fork

    with contextlib.suppress(OSError):
        os.chdir(config.app_dir)
    template = Template(sock, config, parent)
    template.install_signals()
    ready, template.generators = warm_up(config)
    return template, ready


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nbapps.runner.forkserver")
    parser.add_argument("--fd", type=int, required=True, help="our end of the socketpair")
    parser.add_argument("--config", required=True, help="TemplateConfig JSON file")
    parser.add_argument("--runner-dir", default="", help="(names the runner in ps output)")
    parser.add_argument("--parent", type=int, default=0, help="pid of Voilà (default: ppid)")
    args = parser.parse_args(argv)
    parent = args.parent or os.getppid()
    if not tie_to(parent):
        return 1
    sock = socket.socket(fileno=args.fd)
    config = TemplateConfig.load(args.config)
    # the folder we were started in is not an import location (app modules are never preloaded)
    if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd():
        del sys.path[0]
    template, ready = prepare(sock, config, parent)
    sensitive = [m for m in ready["ipython_sensitive"] if m not in config.exclude]
    if sensitive and not config.exclude:  # start again without them (once)
        config.exclude = sensitive
        path = Path(args.config)
        config.dump(path)
        os.execv(sys.executable, [sys.executable, "-m", "nbapps.runner.forkserver",
                                  "--fd", str(args.fd), "--config", args.config,
                                  "--runner-dir", args.runner_dir, "--parent", str(parent)])
    if sensitive:
        ready["fork_safe"] = False
        ready["reasons"].append(f"modules look for IPython at import: {', '.join(sensitive)}")
    ready["excluded"] = list(config.exclude)
    template.fork_safe = bool(ready["fork_safe"])
    send(sock, ready)
    state = "forks kernels" if template.fork_safe else \
        f"does not fork ({'; '.join(ready['reasons'])})"
    print(f"[nbapps template] ready in {ready['seconds']:.2f}s, {len(ready['modules'])} modules "
          f"imported ({len(ready['failed'])} failed, {len(ready['skipped'])} skipped): {state}",
          file=sys.stderr, flush=True)
    template.serve()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
