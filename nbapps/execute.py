"""Run notebooks with papermill: parameters, cell and total timeouts, findings NBA070–077.

How a run works (:func:`run_app`):

- The run happens in a fresh temporary folder holding **only the declared files**
  (``metadata.nbapps.files``, and the thumbnail): exactly what the bundle will ship and the app
  runner will see, so a notebook reading an undeclared file fails here, at publish time, not in
  the gallery. The folder is removed afterwards whatever happened (timeouts, killed kernels).
- papermill injects the parameters (its ``injected-parameters`` cell) and runs the notebook with
  its nbclient engine, using :class:`nbapps.kernel.NbappsKernelManager` (no missed wake-ups) and
  ``shutdown_kernel="immediate"`` (no shutdown stall). papermill's progress bar is off and its
  own error re-raising is not used: the executed notebook is read for findings instead.
- papermill has no total timeout, so the run happens in a worker thread; when the deadline
  passes the kernel's process tree is killed (SIGKILL), which ends the run within about a
  second. A kernel process never outlives :func:`run_app`.
- The kernel process's own stdout/stderr (for instance jupyter_client's transport warning) goes
  to a log file in the run folder, shown in debug logs and in NBA073 messages.

Failures are findings, never exceptions: NBA070 exception in a cell, NBA071 cell timeout, NBA072
total timeout, NBA073 kernel died, NBA074 a ``widget`` cell without display output, NBA075 an
unknown magic (IPython reports it as a ``UsageError`` on stderr only), NBA076 no or unknown
kernel, NBA077 an exception captured by an ``ipywidgets.Output`` (read from the widget state
that nbclient saves in the notebook). Cells in findings are **source** cells: the injected
parameters cell is not counted; messages number them from 1, as JupyterLab does.
"""
from __future__ import annotations

import asyncio
import contextvars
import copy
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import nbformat
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_core.utils import ensure_event_loop
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from papermill.engines import papermill_engines
from papermill.parameterize import parameterize_notebook
from traitlets.config import Config

from .files import atomic_write_text
from .findings import Finding, cell_label, first_line
from .kernel import KernelTracker, NbappsKernelManager, track_kernels
from .kernelspecs import resolve_kernel_name
from .notebook import INJECTED_TAG, WIDGET_TAG, AppNotebook, load_notebook
from .processes import kill_process_tree
from .tracebacks import clean_evalue
from .tracebacks import describe as describe_traceback

__all__ = ["RunResult", "StartedKernel", "app_files", "run_app", "run_notebook",
           "run_notebook_file", "start_kernel"]

log = logging.getLogger("nbapps.execute")

#: Seconds allowed for a kernel to start (within the total timeout).
START_TIMEOUT = 60.0
#: Seconds to wait for the worker to finish after its kernel was killed at the total timeout.
KILL_GRACE = 10.0
#: Cells with this tag may raise (nbclient's convention); their errors are not findings.
RAISES_TAG = "raises-exception"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"
DISPLAY_OUTPUTS = frozenset({"display_data", "execute_result"})


@dataclass
class RunResult:
    """The outcome of one run. ``ok`` is true when no error finding was made."""

    parameters: dict[str, Any]
    ok: bool
    findings: list[Finding]
    nb: NotebookNode
    cell_seconds: dict[int, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """JSON-able: parameters, ok, total_seconds, cell_seconds, finding codes."""
        return {
            "parameters": dict(self.parameters),
            "ok": self.ok,
            "total_seconds": round(self.total_seconds, 3),
            "cell_seconds": {str(k): round(v, 3) for k, v in sorted(self.cell_seconds.items())},
            "findings": [f.code for f in self.findings],
        }


# -- the files a run (and a bundle) gets ---------------------------------------------------------


def app_files(app: AppNotebook) -> list[str]:
    """Relative POSIX paths of the regular files an app ships, sorted.

    ``metadata.nbapps.files`` entries are files, folders (taken recursively) or glob patterns,
    relative to the notebook's folder; the thumbnail is added. Entries that are absolute, go
    outside the folder (``..`` or a link) or match nothing are skipped here: validation reports
    them (NBA062/NBA063). Symbolic links are never shipped.
    """
    folder = app.folder
    if folder is None:
        return []
    root = folder.resolve()
    entries = list(app.meta.files) + ([app.meta.thumbnail] if app.meta.thumbnail else [])
    found: set[str] = set()
    for entry in entries:
        text = entry.strip().replace("\\", "/")
        rel = PurePosixPath(text)
        if not text or rel.is_absolute() or ".." in rel.parts or text.startswith("~"):
            continue
        matches = folder.glob(text) if any(ch in text for ch in "*?[") else [folder / rel]
        for match in matches:
            for path in _walk(match):
                try:
                    found.add(path.resolve().relative_to(root).as_posix())
                except ValueError:
                    log.warning("declared file %s is outside %s; not shipped", path, folder)
    return sorted(found)


def _walk(path: Path) -> Iterable[Path]:
    if path.is_symlink():
        log.warning("declared path %s is a symbolic link; not shipped", path)
        return
    if path.is_file():
        yield path
    elif path.is_dir():
        for child in sorted(path.iterdir()):
            if child.name in ("__pycache__", ".ipynb_checkpoints"):
                continue
            yield from _walk(child)


def copy_files(src: Path, names: Iterable[str], dest: Path) -> None:
    """Copy ``names`` (relative paths from :func:`app_files`) from ``src`` to ``dest``."""
    for name in names:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / name, target)


# -- running --------------------------------------------------------------------------------------


def run_app(
    app: AppNotebook,
    parameters: Mapping[str, Any],
    *,
    cell_timeout: float,
    total_timeout: float,
    kernel_name: str | None = None,
) -> RunResult:
    """Run ``app`` with ``parameters`` (already checked against its contract) in a temporary
    copy of its declared files. ``app.nb`` is not modified."""
    with tempfile.TemporaryDirectory(prefix="nbapps-run-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        if app.folder is not None:
            copy_files(app.folder, app_files(app), workdir)
        return run_notebook(app.nb, parameters, cwd=workdir, cell_timeout=cell_timeout,
                            total_timeout=total_timeout, kernel_name=kernel_name)


def run_notebook_file(
    input_path: str | Path,
    output_path: str | Path,
    parameters: Mapping[str, Any],
    *,
    cell_timeout: float,
    total_timeout: float,
    cwd: str | Path | None = None,
    kernel_name: str | None = None,
) -> RunResult:
    """Run a notebook file and write the executed notebook to ``output_path`` (used by
    ``nbapps run``).

    ``cwd=None`` runs in a temporary copy of the declared files like :func:`run_app`; a ``cwd``
    runs in that folder as it is. The output is written atomically and also when the run failed
    (the notebook as far as it ran, with the error in its cell), like papermill does.
    Raises :class:`~nbapps.errors.NotebookError` when the input is not a usable notebook.
    """
    app = load_notebook(input_path, name=str(input_path))
    if cwd is None:
        result = run_app(app, parameters, cell_timeout=cell_timeout,
                         total_timeout=total_timeout, kernel_name=kernel_name)
    else:
        result = run_notebook(app.nb, parameters, cwd=Path(cwd), cell_timeout=cell_timeout,
                              total_timeout=total_timeout, kernel_name=kernel_name)
    write_notebook_atomic(result.nb, Path(output_path))
    return result


def write_notebook_atomic(nb: NotebookNode, path: Path) -> None:
    """Write ``nb`` to ``path`` through a temporary file in the same folder and a rename."""
    atomic_write_text(path, nbformat.writes(nb))


@dataclass
class _Outcome:
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def run_notebook(
    nb: NotebookNode,
    parameters: Mapping[str, Any],
    *,
    cwd: Path,
    cell_timeout: float,
    total_timeout: float,
    kernel_name: str | None = None,
    kernel: StartedKernel | None = None,
) -> RunResult:
    """Run a copy of ``nb`` in folder ``cwd`` (which must hold the files it needs).

    ``kernel``: one started ahead in ``cwd`` (:func:`start_kernel`); the run uses it when it is
    the notebook's kernel and still alive, else starts its own. It is shut down either way."""
    try:
        return _run_notebook(nb, parameters, cwd=cwd, cell_timeout=cell_timeout,
                             total_timeout=total_timeout, kernel_name=kernel_name, kernel=kernel)
    finally:
        if kernel is not None:
            kernel.discard()


def _run_notebook(nb: NotebookNode, parameters: Mapping[str, Any], *, cwd: Path,
                  cell_timeout: float, total_timeout: float, kernel_name: str | None,
                  kernel: StartedKernel | None) -> RunResult:
    params = dict(parameters)
    started = time.perf_counter()
    name = kernel_name or (nb.metadata.get("kernelspec") or {}).get("name")
    if not name:
        finding = Finding("NBA076", "the notebook names no kernel (metadata.kernelspec is "
                          "missing); open it in JupyterLab, pick a kernel and save")
        return _result(params, [finding], copy.deepcopy(nb), None, started)
    try:
        nb, injected = _prepare(copy.deepcopy(nb), params, name)
    except NoSuchKernel:
        finding = Finding("NBA076", f"kernel '{name}' is not installed here (installed: "
                          f"{_installed_kernels()})")
        return _result(params, [finding], copy.deepcopy(nb), None, started)

    if kernel is not None and kernel.usable(name, cwd):
        return _run_in(nb, params, injected, name, cwd, kernel.private, cell_timeout,
                       total_timeout, started, km=kernel.km)
    with tempfile.TemporaryDirectory(prefix="nbapps-k-", ignore_cleanup_errors=True) as private:
        return _run_in(nb, params, injected, name, cwd, Path(private), cell_timeout,
                       total_timeout, started)


def _kernel_config(private: Path) -> Config:
    """The kernel manager's configuration: the kernel's log and sockets in ``private``."""
    km_config: dict[str, Any] = {"kernel_log": str(private / "kernel.log")}
    if os.name == "posix":
        # Unix sockets instead of TCP ports: no port races between kernels starting at the same
        # time (seen here: "Address already in use", the kernel dies before its first reply)
        # and nothing listening on the network. An absolute, short path (socket paths are
        # limited to ~100 bytes) since the kernel runs in ``cwd``.
        km_config.update(transport="ipc", ip=str(private / "k"))
    return Config({"NbappsKernelManager": km_config})


def _run_in(nb: NotebookNode, params: dict[str, Any], injected: int | None, name: str, cwd: Path,
            private: Path, cell_timeout: float, total_timeout: float,
            started: float, km: _StartedKernelManager | None = None) -> RunResult:
    """Run with the kernel's log and sockets in folder ``private`` (not in ``cwd``); in the
    kernel of ``km`` when given (started ahead with that folder)."""
    kernel_log = private / "kernel.log"
    config = _kernel_config(private)
    tracker = KernelTracker()
    if km is not None:
        tracker.managers.append(km)  # created before the run: the total timeout kills it too
    outcome = _Outcome()
    # the worker runs in a copy of our context, so enclosing track_kernels() blocks see its kernel
    worker = threading.Thread(
        target=contextvars.copy_context().run, name="nbapps-run", daemon=True,
        args=(_work, nb, name, cwd, cell_timeout, config, tracker, outcome, km),
    )
    worker.start()
    try:
        timed_out = not outcome.done.wait(total_timeout)
    except BaseException:  # e.g. Ctrl-C in `nbapps run`: never leave the kernel behind
        tracker.kill_all()
        raise
    if timed_out:
        log.info("total timeout (%.0fs) passed: killing the kernel", total_timeout)
        tracker.kill_all()
        if not outcome.done.wait(KILL_GRACE):
            log.error("the run did not stop %.0fs after its kernel was killed", KILL_GRACE)
    tracker.kill_all()  # normally nothing left; never leave a kernel behind
    cells = _source_cells(nb, injected)
    findings = _findings(nb, cells, outcome.error, timed_out, total_timeout, cell_timeout, name,
                         kernel_log)
    if log.isEnabledFor(logging.DEBUG) and kernel_log.exists():
        log.debug("kernel output:\n%s", kernel_log.read_text(errors="replace"))
    return _result(params, findings, nb, injected, started)


def _work(nb: NotebookNode, kernel_name: str, cwd: Path, cell_timeout: float, config: Config,
          tracker: KernelTracker, outcome: _Outcome,
          km: _StartedKernelManager | None = None) -> None:
    """The worker thread: papermill's nbclient engine on its own event loop."""
    try:
        with track_kernels(tracker):
            papermill_engines.execute_notebook_with_engine(
                None, nb, kernel_name=kernel_name, output_path=None, progress_bar=False,
                log_output=False, start_timeout=START_TIMEOUT, execution_timeout=cell_timeout,
                kernel_manager_class=NbappsKernelManager, shutdown_kernel="immediate",
                resources={"metadata": {"path": str(cwd)}}, config=config, km=km,
            )
    except BaseException as exc:  # noqa: BLE001 - reported as a finding by the caller
        log.debug("run ended with %s", type(exc).__name__, exc_info=True)
        outcome.error = exc
    finally:
        try:
            if km is not None:  # nbclient leaves a kernel it did not start running
                ensure_event_loop().run_until_complete(km.close())
        except Exception:  # noqa: BLE001 - the caller kills what is left of it
            log.debug("closing the started kernel failed", exc_info=True)
        finally:
            try:
                _close_thread_loop()
            finally:
                outcome.done.set()


class _StartedKernelManager(NbappsKernelManager):
    """The manager of a kernel started ahead of its run. nbclient neither shuts down a kernel it
    was given nor closes the channels of the client it made for it: :meth:`close` does both, as
    nbclient does for its own kernels with ``shutdown_kernel="immediate"``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: the clients made for this kernel (nbclient's), their channels stopped by close()
        self.clients: list[Any] = []

    def client(self, **kwargs: Any) -> Any:
        kc = super().client(**kwargs)
        self.clients.append(kc)
        return kc

    async def close(self) -> None:
        for kc in self.clients:
            if kc.channels_running:
                kc.stop_channels()
        if self.has_kernel:
            await self.shutdown_kernel(now=True)


@dataclass
class StartedKernel:
    """A kernel started ahead of its run by :func:`start_kernel` (a spare run program's, say):
    the kernel start and its imports are paid before the parameters are known. papermill still
    injects them as a cell, so the run is the same as in a kernel started for it, with the same
    client (no missed wake-ups), timeouts and immediate shutdown."""

    #: the kernel's resolved name (``python`` runs as ``python3``)
    name: str
    cwd: Path
    km: _StartedKernelManager
    _private: tempfile.TemporaryDirectory[str] = field(repr=False)
    _closed: bool = False

    @property
    def private(self) -> Path:
        """The folder of the kernel's log and sockets."""
        return Path(self._private.name)

    def usable(self, kernel_name: str, cwd: Path) -> bool:
        """Whether a run of a notebook naming ``kernel_name`` in ``cwd`` may use this kernel."""
        process = getattr(self.km.provisioner, "process", None)  # a local kernel's Popen
        return (not self._closed and process is not None and process.poll() is None
                and resolve_kernel_name(kernel_name) == self.name
                and Path(cwd).resolve() == self.cwd.resolve())

    def discard(self) -> None:
        """Shut the kernel down if it still runs and remove its folder (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.km.has_kernel:
                asyncio.run(self.km.close())
        except Exception:  # noqa: BLE001 - kill it the hard way
            log.debug("shutting down a started kernel failed", exc_info=True)
            pid = getattr(self.km.provisioner, "pid", None)
            if isinstance(pid, int):
                kill_process_tree(pid)
        finally:
            self._private.cleanup()


def start_kernel(kernel_name: str, cwd: Path) -> StartedKernel:
    """Start kernel ``kernel_name`` in folder ``cwd`` for a later :func:`run_notebook` in
    ``cwd`` (returns once the process is started, not when it is ready). Raises
    :class:`NoSuchKernel` when it is not installed."""
    resolved = resolve_kernel_name(kernel_name)
    if resolved is None:
        raise NoSuchKernel(kernel_name)
    private = tempfile.TemporaryDirectory(prefix="nbapps-k-", ignore_cleanup_errors=True)
    km = _StartedKernelManager(kernel_name=resolved, config=_kernel_config(Path(private.name)))
    try:
        # nbclient's own kernels get this argument too (no history database)
        asyncio.run(km.start_kernel(cwd=str(cwd),
                                    extra_arguments=["--HistoryManager.hist_file=:memory:"]))
    except BaseException:
        private.cleanup()
        raise
    return StartedKernel(resolved, Path(cwd), km, private)


def _close_thread_loop() -> None:
    """Close the event loop nbclient's ``run_sync`` created for this thread (else each run
    would leak one loop and its file descriptors)."""
    loop = ensure_event_loop()
    if loop.is_running() or loop.is_closed():
        return
    try:
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def _language(nb: NotebookNode, kernel_name: str) -> str:
    """The notebook's language for papermill's parameter translation (NoSuchKernel if it names
    none and its kernel is not installed)."""
    spec = nb.metadata.get("kernelspec") or {}
    info = nb.metadata.get("language_info") or {}
    language = spec.get("language") or info.get("name")
    if isinstance(language, str) and language:
        return language
    from jupyter_client.kernelspec import KernelSpecManager

    resolved = resolve_kernel_name(kernel_name) or kernel_name  # "python" runs as "python3"
    return str(KernelSpecManager().get_kernel_spec(resolved).language)


def _prepare(nb: NotebookNode, params: dict[str, Any],
             kernel_name: str) -> tuple[NotebookNode, int | None]:
    """papermill's per-run metadata and, when there are parameters, its injected cell.

    Returns the notebook and the index of the cell papermill inserted (``None`` when it inserted
    none, or replaced a cell the source already had under the reserved tag).
    """
    nb.metadata.setdefault("papermill", {})
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata["papermill"] = {}
    if not params:
        return nb, None
    had_injected = any(INJECTED_TAG in c.metadata["tags"] for c in nb.cells)
    nb = parameterize_notebook(nb, params, kernel_name=kernel_name,
                               language=_language(nb, kernel_name))
    if had_injected:
        return nb, None
    inserted = [i for i, c in enumerate(nb.cells) if INJECTED_TAG in c.metadata.get("tags", [])]
    return nb, inserted[0] if inserted else None


def _result(params: dict[str, Any], findings: list[Finding], nb: NotebookNode,
            injected: int | None, started: float) -> RunResult:
    cell_seconds: dict[int, float] = {}
    for index, cell in _source_cells(nb, injected):
        duration = cell.metadata.get("papermill", {}).get("duration")
        if cell.cell_type == "code" and isinstance(duration, (int, float)):
            cell_seconds[index] = float(duration)
    ok = not any(f.is_error for f in findings)
    return RunResult(params, ok, findings, nb, cell_seconds, time.perf_counter() - started)


# -- findings -------------------------------------------------------------------------------------


def _source_cells(nb: NotebookNode, injected: int | None) -> list[tuple[int, NotebookNode]]:
    """(source index, cell) for every cell except the one papermill inserted."""
    return [(i if injected is None or i < injected else i - 1, cell)
            for i, cell in enumerate(nb.cells) if i != injected]


def _started(cell: NotebookNode) -> bool:
    return bool(cell.metadata.get("papermill", {}).get("start_time"))


def _cell(code: str, message: str, index: int, cell: NotebookNode) -> Finding:
    return Finding(code, message, cell=index, cell_line=first_line(cell.source))


def _where(index: int, cell: NotebookNode) -> str:
    """``cell 7 (`first line`)``: the 1-based number JupyterLab shows, like every message."""
    return cell_label(index, cell.source)


def _findings(nb: NotebookNode, cells: list[tuple[int, NotebookNode]],
              error: BaseException | None, timed_out: bool, total_timeout: float,
              cell_timeout: float, kernel_name: str, kernel_log: Path) -> list[Finding]:
    running = [(i, c) for i, c in cells if _started(c) and c.cell_type == "code"]
    last = running[-1] if running else None
    findings: list[Finding] = []
    if timed_out:
        where = f" while running {_where(*last)}" if last else " before the first cell ran"
        findings.append(Finding("NBA072", f"the notebook ran longer than the total timeout "
                                f"({total_timeout:g}s){where}; the kernel was stopped",
                                cell=last[0] if last else None,
                                cell_line=first_line(last[1].source) if last else None))
    elif isinstance(error, CellTimeoutError) and last:
        findings.append(_cell("NBA071", f"{_where(*last)} ran longer than the cell timeout "
                              f"({cell_timeout:g}s) and was stopped", *last))
    elif isinstance(error, DeadKernelError):
        where = f" while running {_where(*last)}" if last else " before the first cell ran"
        tail = _log_tail(kernel_log)
        findings.append(Finding("NBA073", f"the kernel died{where}" + (f": {tail}" if tail
                                                                          else ""),
                                cell=last[0] if last else None,
                                cell_line=first_line(last[1].source) if last else None))
    elif isinstance(error, NoSuchKernel):
        findings.append(Finding("NBA076", f"kernel '{kernel_name}' is not installed here "
                                f"(installed: {_installed_kernels()})"))
    elif error is not None and last is None:
        findings.append(Finding("NBA076", f"kernel '{kernel_name}' could not be started: "
                                f"{_describe(error)}"))
    elif error is not None:
        assert last is not None
        findings.append(Finding("NBA073", f"the kernel failed while running {_where(*last)}: "
                                f"{_describe(error)}", cell=last[0],
                                cell_line=first_line(last[1].source)))
    findings.extend(_cell_errors(cells))
    if error is None and not timed_out:
        findings.extend(_widget_output_findings(cells))
    findings.extend(_captured_errors(nb, cells))
    return findings


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def _installed_kernels() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        names = sorted(KernelSpecManager().find_kernel_specs())
    except Exception:  # noqa: BLE001 - only for the message
        return "unknown"
    return ", ".join(names) or "none"


def _log_tail(path: Path, lines: int = 3) -> str:
    """The kernel's last meaningful output lines (without jupyter's transport warning)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    keep = [ln.strip() for ln in text.splitlines()
            if ln.strip() and "running over TCP without encryption" not in ln]
    return " | ".join(keep[-lines:])[:300]


def _cell_errors(cells: list[tuple[int, NotebookNode]]) -> list[Finding]:
    """NBA070 for the first cell that raised (with its failing line and the traceback's last
    frame), NBA075 when that was an unknown magic."""
    numbers = {c.get("execution_count"): i + 1 for i, c in cells
               if c.cell_type == "code" and isinstance(c.get("execution_count"), int)}
    for index, cell in cells:
        if cell.cell_type != "code" or RAISES_TAG in cell.metadata.get("tags", []):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            ename, evalue = out.get("ename", ""), out.get("evalue", "")
            if ename == "SystemExit" and evalue in ("", "0"):
                continue
            if ename == "UsageError":
                return [_cell("NBA075", f"{_where(index, cell)}: {evalue}", index, cell)]
            evalue = clean_evalue(ename, evalue)
            detail = describe_traceback(out.get("traceback") or [], numbers)
            return [_cell("NBA070", f"{_where(index, cell)} raised {ename}: {evalue}"
                          + (f" ({detail})" if detail else ""), index, cell)]
        if cell.metadata.get("papermill", {}).get("exception"):
            # the kernel replied "error" without an error output: IPython's UsageError for an
            # unknown magic is printed on stderr only
            stderr = "".join(o.get("text", "") for o in cell.get("outputs", [])
                             if o.get("output_type") == "stream" and o.get("name") == "stderr")
            message = first_line(stderr, 200) or "the cell failed without an error message"
            code = "NBA075" if stderr.strip() else "NBA070"
            return [_cell(code, f"{_where(index, cell)}: {message}", index, cell)]
    return []


def _widget_output_findings(cells: list[tuple[int, NotebookNode]]) -> list[Finding]:
    """NBA074 for each executed ``widget`` code cell without display output."""
    findings = []
    for index, cell in cells:
        if (cell.cell_type == "code" and WIDGET_TAG in cell.metadata.get("tags", [])
                and _started(cell) and cell.source.strip()
                and not any(o.get("output_type") in DISPLAY_OUTPUTS
                            for o in cell.get("outputs", []))):
            findings.append(_cell("NBA074", f"{_where(index, cell)} is tagged `widget` but "
                                  "displayed nothing", index, cell))
    return findings


def _captured_errors(nb: NotebookNode, cells: list[tuple[int, NotebookNode]]) -> list[Finding]:
    """NBA077 for each ``ipywidgets.Output`` whose saved state holds an error output."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    if not isinstance(state, dict):
        return []
    shown_in = _widget_cells(state, cells)
    findings = []
    for model_id, model in state.items():
        outputs = (model.get("state") or {}).get("outputs") or []
        for out in outputs:
            if isinstance(out, dict) and out.get("output_type") == "error":
                where = sorted(shown_in.get(model_id, ()))
                message = (f"an Output widget captured {out.get('ename', 'an exception')}: "
                           f"{out.get('evalue', '')}")
                if where:
                    index, cell = cells[where[0]]
                    findings.append(_cell("NBA077", f"{_where(index, cell)}: {message}",
                                          index, cell))
                else:
                    findings.append(Finding("NBA077", message))
                break
    return findings


def _widget_cells(state: dict[str, Any],
                  cells: list[tuple[int, NotebookNode]]) -> dict[str, set[int]]:
    """model id -> positions in ``cells`` of the cells that display it (through containers)."""
    shown: dict[str, set[int]] = {}
    for pos, (_index, cell) in enumerate(cells):
        for out in cell.get("outputs", []):
            view = (out.get("data") or {}).get(WIDGET_VIEW_MIME)
            if isinstance(view, dict) and view.get("model_id"):
                shown.setdefault(view["model_id"], set()).add(pos)
    pending = list(shown)
    while pending:
        parent = pending.pop()
        children = ((state.get(parent) or {}).get("state") or {}).get("children") or []
        for child in children:
            if isinstance(child, str) and child.startswith("IPY_MODEL_"):
                child_id = child[len("IPY_MODEL_"):]
                before = len(shown.get(child_id, ()))
                shown.setdefault(child_id, set()).update(shown[parent])
                if len(shown[child_id]) != before:
                    pending.append(child_id)
    return shown
