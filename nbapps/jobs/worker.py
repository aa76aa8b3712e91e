"""One check job: the version's source in a private folder, the confined check program, its
deadline, and the artifacts stored as content-addressed blobs.

Folders of a check (removed at the end, and at the next start if the gallery died)::

    <data_dir>/checks/<job id>-<attempt>/
        src/    the version's source files, read-only: all the check may read of the data dir
        work/   the check's writable folder: home/, jupyter/, out/ (its artifacts)
        check.log   the check program's stdout and stderr (outside its reach)
    <system temp>/nbapps-ck-<data dir tag>-<job id>-<attempt>/
        the check's TMPDIR, writable too: short, because kernels put their Unix sockets there
        and a socket path may not exceed ~100 bytes

The check program (:mod:`.check`) runs as ``python -m nbapps.jobs.check`` wrapped by
:func:`nbapps.sandbox.command` (Landlock; protected: the data dir) with the allowlisted
environment of :mod:`nbapps.runner.env`, its own HOME and TMPDIR, the cell timeout (the
notebook's ``timeout`` capped by the server's) and the total timeout. At the deadline (total
timeout plus a grace for starting and writing) the whole process tree is killed
(:func:`nbapps.processes.kill_process_tree`) and the check fails with NBA323. While it runs the
worker renews its claim on the job; a lost claim (the version was withdrawn, or the job was taken
over) or a stopping gallery kills the check too, and then nothing is recorded.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import sandbox
from ..catalog.jobs import CheckRecord, JobInfo
from ..catalog.values import VersionInfo
from ..errors import NbappsError
from ..files import make_read_only, remove_tree
from ..findings import Finding
from ..processes import kill_process_tree
from ..runner.env import runner_environment
from ..store import BundleStore, SourceFiles
from . import artifacts
from .source import client_claim, derive_manifest, is_derived, source_ref

log = logging.getLogger("nbapps.jobs")

CHECKS_DIR = "checks"


@dataclass(frozen=True)
class CheckSettings:
    """How checks run (set from ``c.NbappsServer.check_*``)."""

    data_dir: Path
    #: worker threads, each running one check at a time
    workers: int = 1
    #: checks that may wait in the queue before submissions are refused (NBA322)
    queue_max: int = 100
    #: most seconds one cell may run (the notebook's own ``timeout`` applies when lower)
    cell_timeout: float = 300.0
    #: most seconds one check may take, all its runs together
    total_timeout: float = 900.0
    #: seconds past ``total_timeout`` before the hard kill (process start, writing artifacts)
    kill_grace: float = 30.0
    #: stored outputs of the notebook above this are a finding (as ``nbapps validate``)
    max_output_bytes: int = 5 * 1024 * 1024
    #: Landlock confinement (as app runners; without Landlock the check runs unconfined)
    sandbox: bool = True
    lease_seconds: float = 30.0
    #: how often an idle worker looks at the queue (a submission here wakes it at once)
    poll_seconds: float = 2.0
    #: starts of one job before it ends in error (a gallery that keeps dying while it runs)
    max_attempts: int = 3
    #: queue a check for versions recorded without one, at start
    check_unchecked: bool = True
    python: str | None = None
    #: folders the check must never read (the data dir; the sandbox keeps the check's own)
    protected_paths: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.data_dir / CHECKS_DIR

    @property
    def temp_prefix(self) -> str:
        """Name prefix of this gallery's check temp folders (one data dir, one tag)."""
        tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:8]
        return f"nbapps-ck-{tag}-"

    def temp_folders(self) -> list[Path]:
        return sorted(Path(tempfile.gettempdir()).glob(self.temp_prefix + "*"))


@dataclass
class CheckOutcome:
    """What a finished check records: the job's state, result and artifacts, and the facts it
    derived for the version."""

    state: str
    result: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)
    record: CheckRecord | None = None


class Abandoned(Exception):
    """The check was stopped before it finished (claim lost, gallery stopping)."""


def error_outcome(message: str, code: str = "NBA324", **extra: Any) -> CheckOutcome:
    finding = Finding(code, message).to_dict()
    return CheckOutcome("error" if code == "NBA324" else "failed",
                        {"ok": False, "findings": [finding], "runs": [], "notes": [],
                         "error": message, **extra})


def _log_tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    keep = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " | ".join(keep[-lines:])[:400]


class ConfinedJob:
    """What every confined job of the pool shares (checks; runs, :mod:`nbapps.runs`): its
    private folders, the sandboxed program started with the runner environment, its deadline
    and hard kill, the claim renewal while it runs. Subclasses implement :meth:`run`."""

    #: how logs name this kind of job
    label = "job"

    def __init__(self, settings: CheckSettings, store: BundleStore, job: JobInfo,
                 version: VersionInfo, *, keep_claim: Callable[[], bool],
                 stopping: threading.Event) -> None:
        self.settings = settings
        self.store = store
        self.job = job
        self.version = version
        self.keep_claim = keep_claim
        self.stopping = stopping
        self.folder = settings.folder / f"{job.id}-{job.attempts}"
        self.tmp = Path(tempfile.gettempdir()) / f"{settings.temp_prefix}{job.id}-{job.attempts}"
        self.confined = False
        self.pid: int | None = None

    def run(self) -> CheckOutcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def _folders(self, files: dict[str, bytes]) -> tuple[Path, Path, Path]:
        """Fresh ``src`` (the source files, read-only), ``work`` (home/, jupyter/) and
        ``work/out`` folders, and the private TMPDIR."""
        remove_tree(self.folder)
        remove_tree(self.tmp)
        src, work = self.folder / "src", self.folder / "work"
        out = work / "out"
        for folder in (src, out, work / "home", work / "jupyter"):
            folder.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(mode=0o700)
        for name, data in files.items():
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        make_read_only(src)
        return src, work, out

    def _start(self, argv: list[str], src: Path, work: Path, log_path: Path, *,
               stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """Start ``argv`` (a program taking ``--parent`` and ``--kernel-sandbox``) confined,
        in ``work``, its output going to ``log_path`` (``stdin``: a pipe for a program that
        waits for its job, :mod:`nbapps.runs.worker`)."""
        cmd = self._confine([*argv, "--parent", str(os.getpid())], src, work)
        if self.confined:
            cmd.append("--kernel-sandbox")
        env = self._environment(work)
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                cmd, cwd=str(work), env=env, stdin=stdin, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = proc.pid
        log.info("%s %s of version %s: started pid %s (%s)", self.label, self.job.id,
                 self.version.id, proc.pid, "confined" if self.confined else "NOT confined")
        return proc

    def _supervise(self, proc: subprocess.Popen[bytes], deadline: float) -> bool:
        """Wait for the check; True when it was killed at its deadline. Raises Abandoned when
        the claim was lost or the gallery stops (the check is killed first)."""
        renew_every = max(1.0, self.settings.lease_seconds / 6)
        next_renew = time.monotonic() + renew_every
        # a pidfd becomes readable when the process ends: noticed at once, not at the next
        # of Popen.wait's polls (up to 50 ms later)
        pidfd = None
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(proc.pid)
        try:
            while True:
                if pidfd is not None:
                    select.select([pidfd], [], [], 0.25)
                try:
                    proc.wait(timeout=0 if pidfd is not None else 0.25)
                    return False
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if self.stopping.is_set():
                    raise Abandoned("the gallery is stopping")
                if now >= deadline:
                    log.warning("%s %s: past its deadline; killing pid %s", self.label,
                                self.job.id, proc.pid)
                    return True
                if now >= next_renew:
                    next_renew = now + renew_every
                    if not self.keep_claim():
                        raise Abandoned("the job is no longer ours (cancelled or taken over)")
        finally:
            if pidfd is not None:
                os.close(pidfd)
            # always: a check killed at its deadline, abandoned, or even one that exited
            # (its descendants are its own to kill, this is the backstop)
            kill_process_tree(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)

    # -- process set-up ------------------------------------------------------------------------

    def _confine(self, argv: list[str], src: Path, work: Path) -> list[str]:
        rules = self._rules(src, work)
        return argv if rules is None else sandbox.wrap(argv, rules, python=self.settings.python)

    def _rules(self, src: Path, work: Path) -> sandbox.Plan | None:
        """The program's Landlock rules (None: it runs unconfined); sets :attr:`confined`."""
        s = self.settings
        if not s.sandbox:
            return None
        if not sandbox.available():
            log.warning("Landlock is not available here: the %s of version %s runs without "
                        "a file-system sandbox", self.label, self.version.id)
            return None
        self.confined = True
        return sandbox.plan(read=[src], write=[work, self.tmp], python=s.python,
                            protect=[s.data_dir, *s.protected_paths])

    def _environment(self, work: Path) -> dict[str, str]:
        jupyter = work / "jupyter"
        env = runner_environment(
            jupyter_path=str(jupyter / "path"), config_dir=str(jupyter / "config"),
            runtime_dir=str(self.tmp / "runtime"), data_dir=str(jupyter / "data"),
            extra_env=self.settings.extra_env)
        env["HOME"] = str(work / "home")
        env["TMPDIR"] = str(self.tmp)
        env["IPYTHONDIR"] = str(work / "home" / ".ipython")
        env["MPLCONFIGDIR"] = str(work / "home" / ".config" / "matplotlib")
        return env


class CheckRun(ConfinedJob):
    """Runs one claimed check job (:meth:`run`), in the calling thread."""

    label = "check"

    # -- the steps -----------------------------------------------------------------------------

    def run(self) -> CheckOutcome:
        """The outcome to record; raises :class:`Abandoned` when nothing must be recorded."""
        started = time.monotonic()
        try:
            source = self._source()
            record = self._derive(source)
        except NbappsError as exc:
            log.warning("check %s: source of version %s unreadable: %s", self.job.id,
                        self.version.id, exc.message)
            return error_outcome(f"the stored source could not be read: {exc.message}")
        try:
            outcome = self._check(source)
        finally:
            remove_tree(self.folder)
            remove_tree(self.tmp)
        outcome.result["seconds"] = round(time.monotonic() - started, 3)
        outcome.result["confined"] = self.confined
        outcome.record = CheckRecord(
            manifest=record,
            thumbnail=artifacts.thumbnail_ref(outcome.artifacts[artifacts.THUMBNAIL])
            if artifacts.THUMBNAIL in outcome.artifacts else None)
        return outcome

    def _source(self) -> SourceFiles:
        sha, key = source_ref(self.version)
        return self.store.read_source(sha, key)

    def _derive(self, source: SourceFiles) -> dict[str, Any] | None:
        """A version stored by an earlier nbapps (or seeded without a derived manifest): store
        its source as a source object and derive its manifest. Others keep theirs."""
        if is_derived(self.version.manifest) and not source.legacy:
            return None
        stored = self.store.put_source(source.files)
        old = self.version.manifest if isinstance(self.version.manifest, dict) else {}
        claim = old.get("client_claim") if old.get("legacy") else client_claim(old)
        return derive_manifest(source.files, stored, claim=client_claim(claim) or None)

    def _check(self, source: SourceFiles) -> CheckOutcome:
        s = self.settings
        src, work, out = self._folders(source.files)
        timeout = source_timeout(source) or s.cell_timeout
        cell_timeout = min(timeout, s.cell_timeout)
        # -P (3.11+): the check's working folder is not on its sys.path
        safe_path = ["-P"] if sys.version_info >= (3, 11) else []
        argv = [s.python or sys.executable, *safe_path, "-m", "nbapps.jobs.check",
                "--source", str(src),
                "--out", str(out), "--cell-timeout", f"{cell_timeout:g}",
                "--total-timeout", f"{s.total_timeout:g}",
                "--max-output-bytes", str(s.max_output_bytes)]
        log_path = self.folder / "check.log"
        deadline = time.monotonic() + s.total_timeout + s.kill_grace
        proc = self._start(argv, src, work, log_path)
        timed_out = self._supervise(proc, deadline)
        if timed_out:
            limit = s.total_timeout
            return error_outcome(f"the check ran longer than {limit:g} s and was stopped "
                                 "(all its runs together)", code="NBA323")
        report_path = out / artifacts.FILES[artifacts.REPORT]
        if proc.returncode != 0 or not report_path.is_file():
            tail = _log_tail(log_path)
            log.warning("check %s: the check program ended with %s without a report: %s",
                        self.job.id, proc.returncode, tail)
            return error_outcome(f"the check program ended with status {proc.returncode} "
                                 "without a report" + (f": {tail}" if tail else ""))
        return self._outcome(out)

    def _outcome(self, out: Path) -> CheckOutcome:
        stored, notes = artifacts.collect(out, self.store)
        report = artifacts.load_json(self.store, stored[artifacts.REPORT]) \
            if artifacts.REPORT in stored else None
        if not isinstance(report, dict):
            return error_outcome("the check's report could not be kept")
        findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
        ok = bool(report.get("ok")) and not any(f.get("severity") == "error" for f in findings)
        result = {"ok": ok, "findings": findings, "runs": report.get("runs") or [],
                  "notes": list(report.get("notes") or []) + notes,
                  "duration": report.get("duration"), "exit_code": report.get("exit_code")}
        return CheckOutcome("passed" if ok else "failed", result, stored)

def source_timeout(source: SourceFiles) -> float | None:
    """The notebook's own ``metadata.nbapps.timeout``, if it sets a usable one."""
    import json

    try:
        meta = json.loads(source.files["app.ipynb"]).get("metadata", {}).get("nbapps", {})
        value = meta.get("timeout") if isinstance(meta, dict) else None
    except (KeyError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        return None
    return float(value)


__all__ = ["Abandoned", "CheckOutcome", "CheckRun", "CheckSettings", "ConfinedJob",
           "error_outcome",
           "remove_tree", "source_timeout"]
