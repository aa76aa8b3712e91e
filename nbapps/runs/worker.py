"""One run job: the approved source in a private folder, the confined run program, its
deadline, and the artifacts stored as content-addressed blobs.

The machinery is the check's (:class:`nbapps.jobs.worker.ConfinedJob`): ``<data_dir>/runs/
<job id>-<attempt>/`` with ``src/`` (read-only source), ``work/`` (HOME, Jupyter folders,
``out/``), ``run.log``, and a short private TMPDIR (``nbapps-rn-<tag>-<job>-<attempt>``) in
which the notebook's working folder lives (the only folder its kernels may write). Both are
removed at the end, and at the next start after a crash. At ``run_timeout`` the notebook's
kernel is killed by the program (NBA072); at ``run_timeout + kill_grace`` the worker kills the
whole process tree (NBA372).

Artifacts, recorded on the job as ``{name: sha256}``: ``executed.ipynb``, ``report.html`` (made
here from the executed notebook, :meth:`RunJob._report`), ``result.json`` and every declared
output under its own relative name. ``report.pdf`` is not made here: it is printed on its first
download (:mod:`.pdf`) and then added to the job's artifacts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import NbappsError
from ..files import make_read_only, remove_tree
from ..findings import Finding
from ..jobs.source import source_ref
from ..jobs.worker import Abandoned, CheckOutcome, CheckSettings, ConfinedJob, _log_tail
from ..jobs.worker import source_timeout as notebook_timeout
from ..processes import kill_process_tree
from .forks import Zygote
from .program import RESERVED

log = logging.getLogger("nbapps.runs")

RUNS_DIR = "runs"
EXECUTED = "executed.ipynb"
REPORT = "report.html"
RESULT = "result.json"
PDF = "report.pdf"


@dataclass(frozen=True)
class RunSettings(CheckSettings):
    """How runs run (``c.NbappsServer.run_*``); ``total_timeout`` is ``run_timeout``."""

    workers: int = 1
    queue_max: int = 100
    #: runs one person may have queued or running (NBA383 beyond)
    user_max: int = 50
    total_timeout: float = 600.0
    check_unchecked: bool = False
    #: finished runs kept per app: at most this many (None: no limit) ...
    keep_count: int | None = 100
    #: ... and none older than this many days (None: no limit)
    keep_days: float | None = 30.0
    #: largest declared output file kept
    max_output_file_bytes: int = 20 * 1024 * 1024
    #: largest artifact kept (executed notebook, report)
    max_artifact_bytes: int = 100 * 1024 * 1024
    #: offer report.pdf, printed with Chromium (:mod:`nbapps.report_pdf`, when installed) on
    #: its first download (:mod:`.pdf`); False: no PDF at all
    pdf: bool = True
    pdf_timeout: float = 60.0
    #: seconds between retention passes
    prune_every: float = 600.0
    #: keep one run program per pool started and waiting for its next job (imports, report
    #: exporter and the default kernel ready): a run skips ~2 s of start-up
    prewarm: bool = True
    #: a spare program is kept this long after the last run started, then let go
    spare_idle_seconds: float = 600.0
    #: a spare is prepared only while fewer runs than this are going (None: CPU count + 1)
    spare_busy_max: int | None = None
    #: fork run programs from a zygote that has done their imports (:mod:`.zygote`)
    fork: bool = True

    @property
    def folder(self) -> Path:
        return self.data_dir / RUNS_DIR

    @property
    def temp_prefix(self) -> str:
        tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return f"nbapps-rn-{tag}-"


def _outcome(state: str, code: str, message: str, **extra: Any) -> CheckOutcome:
    finding = Finding(code, message).to_dict()
    return CheckOutcome(state, {"findings": [finding], "values": {}, "error": message,
                                "notes": [], **extra})


def _python(settings: RunSettings) -> list[str]:
    """How a spawned run program starts (its options follow)."""
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    return [settings.python or sys.executable, *safe_path, "-m", "nbapps.runs.program"]


def _argv(settings: RunSettings, src: Path, out: Path) -> list[str]:
    return [*_python(settings), "--source", str(src), "--out", str(out)]


class ForkingJob(ConfinedJob):
    """A run job whose program is forked from the pool's zygote (:mod:`.forks`) when it has
    one that can fork, with the rules and environment a spawned program would get; else
    spawned as before."""

    settings: RunSettings
    zygote: Zygote | None = None
    #: whether the program was forked from the zygote (else spawned)
    forked = False

    def _start(self, argv: list[str], src: Path, work: Path, log_path: Path, *,
               stdin: int = subprocess.DEVNULL) -> Any:
        zygote = self.zygote
        if zygote is not None:
            rules = self._rules(src, work)
            options = [*argv[len(_python(self.settings)):], "--parent", str(zygote.pid),
                       "--fork-kernels"]
            if self.confined:
                options.append("--kernel-sandbox")
            proc = zygote.spawn(options, cwd=work, env=self._environment(work),
                                log_path=log_path, rules=rules,
                                pipe_stdin=stdin == subprocess.PIPE)
            if proc is not None:
                self.pid, self.forked = proc.pid, True
                log.info("%s %s of version %s: forked pid %s from the run zygote (%s)",
                         self.label, self.job.id, self.version.id, proc.pid,
                         "confined" if self.confined else "NOT confined")
                return proc
            self.confined = False
        return super()._start(argv, src, work, log_path, stdin=stdin)


class SpareProgram(ForkingJob):
    """A run program started ahead of its job, confined to folders of its own, waiting for
    the job on stdin (``--stdin-job``) with its imports done and a kernel started (see
    :mod:`.program`); :class:`RunJob` fills its ``src`` and hands it the job. It dies with its
    worker thread (``PR_SET_PDEATHSIG``) and with the gallery; :meth:`discard` kills it with its
    kernel."""

    label = "run"
    settings: RunSettings

    def __init__(self, settings: RunSettings, stopping: threading.Event,
                 zygote: Zygote | None = None) -> None:
        name = f"spare-{secrets.token_hex(4)}"
        job: Any = SimpleNamespace(id=name, attempts=0, parameters={})
        super().__init__(settings, None, job, SimpleNamespace(id="(next)"),  # type: ignore
                         keep_claim=lambda: True, stopping=stopping)
        self.zygote = zygote
        self.folder = settings.folder / name
        self.tmp = Path(tempfile.gettempdir()) / f"{settings.temp_prefix}{name}"
        self.src, self.work, self.out = self._folders({})
        self.log_path = self.folder / "run.log"
        self.proc = self._start([*_argv(settings, self.src, self.out), "--stdin-job"],
                                self.src, self.work, self.log_path, stdin=subprocess.PIPE)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def load(self, files: dict[str, bytes]) -> None:
        """The job's source files into the (still empty) read-only ``src``."""
        os.chmod(self.src, 0o700)
        for name, data in files.items():
            target = self.src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        make_read_only(self.src)

    def discard(self) -> None:
        kill_process_tree(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        remove_tree(self.folder)
        remove_tree(self.tmp)


class RunJob(ForkingJob):
    """Runs one claimed run job (:meth:`run`), in the calling thread; with ``spare`` (a
    :class:`SpareProgram`), in that already started program."""

    label = "run"
    settings: RunSettings
    spare: SpareProgram | None = None

    def run(self) -> CheckOutcome:
        """The outcome to record; raises :class:`Abandoned` when nothing must be recorded."""
        started = time.monotonic()
        try:
            source = self.store.read_source(*source_ref(self.version))
        except NbappsError as exc:
            log.warning("run %s: source of version %s unreadable: %s", self.job.id,
                        self.version.id, exc.message)
            return _outcome("error", "NBA373", f"the stored source could not be read: "
                            f"{exc.message}")
        try:
            outcome = self._execute(source.files, notebook_timeout(source))
        finally:
            remove_tree(self.folder)
            remove_tree(self.tmp)
        outcome.result["seconds"] = round(time.monotonic() - started, 3)
        outcome.result["confined"] = self.confined
        outcome.result["forked"] = self.forked
        #: the program's pid and private folder name (to find leftovers of a killed run)
        outcome.result["pid"], outcome.result["folder"] = self.pid, self.folder.name
        return outcome

    def _execute(self, files: dict[str, bytes], own_timeout: float | None) -> CheckOutcome:
        s = self.settings
        cell_timeout = min(own_timeout or s.cell_timeout, s.cell_timeout, s.total_timeout)
        job = {"params": self.job.parameters, "cell_timeout": cell_timeout,
               "total_timeout": s.total_timeout,
               "max_output_file_bytes": s.max_output_file_bytes,
               "title": self.version.title or self.version.app_slug,
               "version": str(self.version.number)}
        deadline = time.monotonic() + s.total_timeout + s.kill_grace
        spare, self.spare = self.spare, None
        if spare is not None and spare.alive():
            # the spare's folders become this run's (removed at its end by run())
            self.folder, self.tmp, self.confined = spare.folder, spare.tmp, spare.confined
            self.forked = spare.forked
            spare.load(files)
            out, log_path, proc = spare.out, spare.log_path, spare.proc
            self.pid = proc.pid
            assert proc.stdin is not None
            try:
                proc.stdin.write(json.dumps(job).encode("utf-8") + b"\n")
                proc.stdin.close()
            except OSError:  # it died just now: its exit is handled below as any other
                pass
            log.info("run %s of version %s: in spare pid %s", self.job.id, self.version.id,
                     proc.pid)
        else:
            if spare is not None:
                spare.discard()
            src, work, out = self._folders(files)
            argv = [*_argv(s, src, out), "--params", json.dumps(job["params"]),
                    "--cell-timeout", f"{cell_timeout:g}",
                    "--total-timeout", f"{s.total_timeout:g}",
                    "--max-output-file-bytes", str(s.max_output_file_bytes),
                    "--title", str(job["title"]), "--version", str(job["version"])]
            log_path = self.folder / "run.log"
            proc = self._start(argv, src, work, log_path)
        if self._supervise(proc, deadline):
            return _outcome("failed", "NBA372", f"the run took longer than "
                            f"{s.total_timeout:g} s and was stopped")
        summary_path = out / "run.json"
        if proc.returncode != 0 or not summary_path.is_file():
            tail = _log_tail(log_path)
            log.warning("run %s: the run program ended with %s without a summary: %s",
                        self.job.id, proc.returncode, tail)
            return _outcome("error", "NBA373", f"the run program ended with status "
                            f"{proc.returncode} without a summary" + (f": {tail}" if tail else ""))
        try:
            summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            summary = None
        if not isinstance(summary, dict):
            return _outcome("error", "NBA373", "the run's summary could not be read")
        return self._collect(out, summary)

    def _collect(self, out: Path, summary: dict[str, Any]) -> CheckOutcome:
        s = self.settings
        notes = [str(n) for n in summary.get("notes") or []]
        findings = [f for f in summary.get("findings") or [] if isinstance(f, dict)]
        stored: dict[str, str] = {}
        # report.html is made here, from the executed notebook (never taken from the program)
        files = {name: out / name for name in (EXECUTED, RESULT)}
        for name in summary.get("outputs") or []:
            if isinstance(name, str) and name not in RESERVED:
                files[name] = out / "outputs" / name
        kept: dict[str, bytes] = {}  # what is read again below: read once
        for name, path in files.items():
            if path.is_symlink() or not path.is_file():
                continue
            size = path.stat().st_size
            if size > s.max_artifact_bytes:
                notes.append(f"{name} ({size} bytes) is larger than the gallery keeps")
                continue
            data = path.read_bytes()
            stored[name] = self.store.put_blob(data)
            if name in (EXECUTED, RESULT):
                kept[name] = data
        values: Any = {}
        if RESULT in kept:
            try:
                values = json.loads(kept[RESULT].decode("utf-8"))
            except ValueError:
                notes.append("result.json could not be read")
        if EXECUTED in kept:
            self._report(kept[EXECUTED], stored, notes)
        ok = bool(summary.get("ok")) and not any(f.get("severity") == "error" for f in findings)
        result = {"findings": findings, "values": values if isinstance(values, dict) else {},
                  "duration": summary.get("seconds"), "cells": summary.get("cells") or [],
                  "outputs": list(summary.get("outputs") or []), "notes": notes}
        return CheckOutcome("passed" if ok else "failed", result, stored)

    def _report(self, executed: bytes, stored: dict[str, str], notes: list[str]) -> str | None:
        """report.html from the executed notebook, made in the gallery with the review
        preview's sanitizer (:mod:`.report`): the program's own process never makes what the
        gallery shows, and its imports stay small (nbconvert's templates cost each program
        ~0.55 s of CPU). Returns the HTML (None when it could not be made: a note says why)."""
        try:
            import nbformat

            from .report import render_report

            nb = nbformat.reads(executed.decode("utf-8"), as_version=4)
            html = render_report(nb, title=self.version.title or self.version.app_slug,
                                 parameters=self.job.parameters,
                                 when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                 version=str(self.version.number))
        except Exception as exc:  # noqa: BLE001 - the run's other artifacts still count
            log.info("run %s: no HTML report: %s", self.job.id, exc)
            notes.append(f"the HTML report could not be made: {type(exc).__name__}: "
                         f"{str(exc)[:200]}"[:300])
            return None
        stored[REPORT] = self.store.put_blob(html.encode("utf-8"))
        return html


__all__ = ["EXECUTED", "PDF", "REPORT", "RESULT", "Abandoned", "RunJob", "RunSettings",
           "SpareProgram"]
