"""A run's PDF, printed the first time someone asks for it (not at every run).

A run keeps ``report.html``; its ``report.pdf`` (Chromium printing that report,
:mod:`nbapps.report_pdf`, ~1 s of CPU) is *offered* while ``run_pdf`` is on, and printed on the
first ``GET /api/runs/<id>/report.pdf`` (the API, the CLI's ``runs create --download``, the app
page's and the frame's links all come through it). Most reports are never fetched as a PDF
(schedules, snapshots, batches), so runs no longer pay for it.

* The printed PDF becomes the run's artifact like the others (a blob of the bundle store named
  in the job's ``artifacts``, :meth:`~nbapps.catalog.runs.RunsMixin.add_run_artifact`): later
  downloads, on any replica, read it from the store.
* Concurrent first requests in one gallery share one print (one future per run); two replicas
  may each print once, the first PDF recorded wins and the other's blob is removed again.
* A print that fails or runs past ``pdf_timeout`` gives the printer's coded error (NBA386-388)
  to every request waiting for it and is forgotten: a later request tries again.
* The print runs on this module's own threads (at most :data:`nbapps.report_pdf.MAX_PARALLEL`),
  never on the event loop nor on the gallery's work pool: a slow Chromium delays only PDFs.
"""
from __future__ import annotations

import asyncio
import importlib.util
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..files import remove_tree
from .worker import PDF, REPORT

log = logging.getLogger("nbapps.runs")

#: the URL the PDF printer maps to the pinned widget bundle (:mod:`nbapps.report_pdf`)
BUNDLE_URL = "/static/widgets/embed.js"
#: print threads of one gallery (the printers themselves are shared by the process)
THREADS = 2

_available: bool | None = None


def printing_available() -> bool:
    """Whether this machine can print PDFs (Python Playwright and Chromium installed); checked
    once, without importing Playwright (this is called on the event loop)."""
    global _available
    if _available is None:
        try:
            from ..report_pdf import CHROMIUM
        except ImportError:
            _available = False
        else:
            _available = (importlib.util.find_spec("playwright") is not None
                          and Path(CHROMIUM).exists())
    return _available


class RunPdfs:
    """The PDFs of one gallery's runs: which are offered (:meth:`offered`) and the one print
    per run when first asked for (:meth:`get`)."""

    def __init__(self, catalog: Any, store: Any, *, enabled: bool, timeout: float,
                 forget: Any = None) -> None:
        self.catalog = catalog
        self.store = store
        self.enabled = enabled
        self.timeout = timeout
        #: ``forget(shas)``: removes blobs no run references (the pool's, after a lost race)
        self._forget = forget
        self._inflight: dict[int, asyncio.Future[str]] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        #: PDFs this gallery printed (tests, metrics)
        self.printed = 0

    def offered(self, run: Any) -> bool:
        """Whether ``run`` (a :class:`~nbapps.catalog.runs.RunInfo`) has a PDF to download,
        printed already or on request."""
        if PDF in run.artifacts:
            return True
        return (self.enabled and run.finished and REPORT in run.artifacts
                and printing_available())

    async def get(self, run: Any) -> str:
        """The blob address of ``run``'s PDF, printed now if it has none (see the module
        docstring); raises the printer's :class:`~nbapps.report_pdf.ReportPdfError`."""
        sha = run.artifacts.get(PDF)
        if sha is not None:
            return str(sha)
        future = self._inflight.get(run.id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = loop.run_in_executor(self._pool(), self._print, run.id)
            self._inflight[run.id] = future

            def done(f: asyncio.Future[str], run_id: int = run.id) -> None:
                if self._inflight.get(run_id) is f:
                    del self._inflight[run_id]
                if not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" log when nobody waits

            future.add_done_callback(done)
        # a request that goes away does not cancel the print others wait for
        return await asyncio.shield(future)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(THREADS,
                                                    thread_name_prefix="nbapps-run-pdf")
            return self._executor

    def _print(self, run_id: int) -> str:
        run = self.catalog.get_run(run_id)  # another replica may have printed it meanwhile
        if PDF in run.artifacts:
            return str(run.artifacts[PDF])
        if REPORT not in run.artifacts:
            raise NotFound(f"run {run_id} has no report to print")
        from ..report_pdf import html_to_pdf
        from .report import with_embed_url

        html = self.store.get_blob(run.artifacts[REPORT]).decode("utf-8", errors="replace")
        folder = Path(tempfile.mkdtemp(prefix="nbapps-pdf-"))
        try:
            page = folder / REPORT
            page.write_text(with_embed_url(html, BUNDLE_URL), encoding="utf-8")
            target = folder / PDF
            # the report's own <title> (the app's title) becomes the PDF's
            html_to_pdf(page, target, timeout=self.timeout)
            sha = self.store.put_blob(target.read_bytes())
        finally:
            remove_tree(folder)
        with self._lock:
            self.printed += 1
        try:
            kept = self.catalog.add_run_artifact(run_id, PDF, sha)
        except NotFound:  # deleted (retention) while it printed: the PDF is nobody's
            kept = None
        if kept != sha and self._forget is not None:
            self._forget([sha])  # another replica recorded its PDF first, or the run is gone
        if kept is None:
            raise NotFound(f"no run with id {run_id}")
        log.info("run %s: report.pdf printed on first download", run_id)
        return str(kept)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


__all__ = ["PDF", "RunPdfs", "printing_available"]
