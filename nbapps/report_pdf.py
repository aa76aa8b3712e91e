"""Print a run's HTML report to PDF with Chromium, offline and bounded in time.

The report (``report.html``: nbconvert's export of an executed notebook with its widget state
embedded) is app output, so it is treated as untrusted, like an app page:

* it is never opened as a ``file://`` URL (a page there may read any local file into the PDF).
  Chromium loads it from a made-up origin (:data:`ORIGIN`) whose every request Playwright
  answers itself: the report, files beside it (its local assets, confined to its folder) and the
  gallery's pinned ipywidgets HTML-manager bundle (``static/widgets/embed.js``) in place of the
  CDN or gallery URL a template names for it. Everything else is aborted (the report must not
  reach the network, nor the gallery on loopback); WebSockets and service workers are refused,
  and Chromium runs with an unusable proxy and DNS as a second fence;
* the widgets are given a bounded wait to render (each saved view gets its ``widget-subarea``);
  when they do not, the PDF is still printed with the widgets' text fallback and an NBA389
  warning is logged;
* the PDF is written atomically (a temp file beside it, then a rename): readers see no half PDF.

Printers: starting Chromium costs about 2 s of CPU, more than laying out a report, so up to
:data:`MAX_PARALLEL` *printers* (a thread that owns one Playwright driver and one Chromium) are
kept per process and take print jobs from one queue. Each report is printed in a new browser
context (its own cookies, storage, cache and renderer process), closed after the print. A
printer whose Chromium had nothing to print for :data:`KEEP_SECONDS` closes it and ends; the
next print starts one again. A printer that crashed relaunches Chromium for its next job.

Threads: Playwright's sync API refuses to run on a thread with a running asyncio loop, and
a hung print must not hang its caller. :func:`html_to_pdf` therefore hands the job to a printer
thread and waits for it at most ``timeout`` (+ a small grace); a printer that did not answer in
time is retired (it never takes another job; a new printer replaces it) and its Chromium is
closed when its call returns. It is safe to call from any thread, including a worker thread of
a thread pool; from async code call it as ``await asyncio.to_thread(html_to_pdf, ...)``
(called on the loop's thread it works too, but blocks the loop meanwhile). Waiting for a free
printer counts against ``timeout``. :func:`shutdown` closes every printer (the gallery calls it
when it stops).
"""
from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .errors import NbappsError

log = logging.getLogger("nbapps.report_pdf")

CHROMIUM = "/usr/bin/chromium"
#: launch flags that work headless in containers; the proxy/DNS flags make the network unusable
#: even if a request slipped past the request router
CHROMIUM_ARGS = (
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio",
    "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
)
#: the made-up origin the report is served from (``.invalid`` never resolves)
ORIGIN = "http://report.nbapps.invalid"
#: the pinned ipywidgets HTML-manager bundle (``scripts/widget_embed.py``)
WIDGET_BUNDLE = Path(__file__).parent / "server" / "static" / "widgets" / "embed.js"
#: URLs a report may name for the widget renderer: the html-manager on a CDN, or the gallery's
_WIDGET_BUNDLE_URL = re.compile(
    r"/(?:@jupyter-widgets/html-manager@[^/]*/dist/embed(?:-amd)?\.js"
    r"|static/widgets/embed\.js)$")
#: Chromiums printing at once in this process (each is ~150 MB and a core while it lays out)
MAX_PARALLEL = 2
#: seconds an idle printer keeps its Chromium before closing it
KEEP_SECONDS = 60.0
#: share of the time left that may be spent waiting for widgets to render
WIDGET_WAIT_SHARE = 0.5
#: time the caller waits beyond ``timeout`` for the worker to report its own timeout
_GRACE = 5.0
_MIME = {".css": "text/css", ".js": "text/javascript", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
         ".svg": "image/svg+xml", ".woff": "font/woff", ".woff2": "font/woff2",
         ".ttf": "font/ttf", ".json": "application/json",
         ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8"}

#: JS: how many saved widget views can render, and how many have (a ``widget-subarea`` with
#: content right before the view's script element; see the html-manager's ``renderWidgets``)
_WIDGETS_JS = """() => {
  const ids = new Set();
  for (const s of document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-state+json"]')) {
    try { Object.keys(JSON.parse(s.textContent).state || {}).forEach(k => ids.add(k)); }
    catch (e) {}
  }
  let expected = 0, rendered = 0, failed = 0;
  for (const v of document.querySelectorAll(
      'script[type="application/vnd.jupyter.widget-view+json"]')) {
    let id = null;
    try { id = JSON.parse(v.textContent).model_id; } catch (e) {}
    if (!ids.has(id)) continue;
    expected += 1;
    const p = v.previousElementSibling;
    if (p && p.classList.contains('widget-subarea') && p.childElementCount > 0) {
      rendered += 1;
      if (p.querySelector('.jupyter-widgets-error-widget') ||
          /Error displaying widget|Could not create a view/.test(p.textContent)) failed += 1;
    }
  }
  return [expected, rendered, failed];
}"""


class ReportPdfError(NbappsError):
    """A report could not be printed (NBA386-NBA388); see :mod:`nbapps.codes`."""

    http_status = 500


@dataclass
class _Job:
    source: Path
    target: Path
    deadline: float
    title: str | None
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    blocked: list[str] = field(default_factory=list)
    #: the printer that took the job (retired when it does not answer in time)
    printer: _Printer | None = None

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def finish(self, error: BaseException | None) -> None:
        self.error = error
        self.done.set()

    def _ms(self) -> float:
        left = self.left()
        if left <= 0:
            raise _timeout(self.source, "time limit reached")
        return left * 1000.0

    def _render(self, browser: Any) -> None:
        context = browser.new_context(service_workers="block", java_script_enabled=True,
                                      accept_downloads=False)
        try:
            context.route("**/*", self._route)
            context.route_web_socket(re.compile(".*"), lambda ws: ws.close())
            page = context.new_page()
            page.set_default_timeout(self._ms())
            page.goto(f"{ORIGIN}/{self.source.name}", wait_until="load", timeout=self._ms())
            self._wait_for_widgets(page)
            if self.title is not None:
                page.evaluate("t => { document.title = t; }", self.title)
            if self.blocked:
                log.info("report %s: blocked %d request(s), first %s", self.source,
                         len(self.blocked), self.blocked[0])
            self._ms()  # still in time?
            fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".tmp",
                                       dir=self.target.parent)
            os.close(fd)
            try:
                page.pdf(path=tmp, format="A4", print_background=True, outline=True,
                         tagged=True, margin={"top": "12mm", "bottom": "12mm",
                                              "left": "10mm", "right": "10mm"})
                if self.cancelled.is_set() or self.left() <= 0:
                    raise _timeout(self.source, "the PDF was ready after the time limit")
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        finally:
            context.close()

    def _wait_for_widgets(self, page: Any) -> None:
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        expected, rendered, failed = page.evaluate(_WIDGETS_JS)
        if expected == 0:
            return
        budget = max(self.left(), 0.0) * WIDGET_WAIT_SHARE
        if rendered < expected:
            with contextlib.suppress(PlaywrightTimeout):  # printed with the fallback then
                page.wait_for_function(
                    f"() => {{ const [e, r] = ({_WIDGETS_JS})(); return r >= e; }}",
                    timeout=budget * 1000.0, polling=100)
            expected, rendered, failed = page.evaluate(_WIDGETS_JS)
        if rendered < expected or failed:
            log.warning("NBA389: %d of %d widget(s) of %s rendered within %.1f s (%d as an "
                        "error); the PDF shows the others' text fallback", rendered - failed,
                        expected, self.source, budget, failed)

    def _route(self, route: Any) -> None:
        url = route.request.url
        local = self._local_file(url)
        if local is not None:
            route.fulfill(path=str(local), headers={"Content-Type": _content_type(local)})
            return
        path = urlsplit(url).path
        if _WIDGET_BUNDLE_URL.search(path) and WIDGET_BUNDLE.is_file():
            route.fulfill(path=str(WIDGET_BUNDLE),
                          headers={"Content-Type": "text/javascript; charset=utf-8"})
            return
        self.blocked.append(url[:200])
        route.abort("blockedbyclient")

    def _local_file(self, url: str) -> Path | None:
        """The file under the report's folder that ``url`` names on :data:`ORIGIN`, if any."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != ORIGIN:
            return None
        folder = self.source.parent
        candidate = (folder / unquote(parts.path).lstrip("/")).resolve()
        if not candidate.is_relative_to(folder) or not candidate.is_file():
            return None
        return candidate


class _Printer:
    """A thread with one Playwright driver and (while it has work) one Chromium; see the
    module docstring."""

    def __init__(self, pool: _PrinterPool) -> None:
        self.pool = pool
        #: set when the printer must take no more jobs (it hung, or the pool shuts down)
        self.retired = threading.Event()
        #: Chromium launches by this printer (for tests and logs)
        self.launches = 0
        self.thread = threading.Thread(target=self._loop, name="nbapps-pdf-printer",
                                       daemon=True)

    def _loop(self) -> None:
        job: _Job | None = None
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser: Any = None
                try:
                    while (job := self.pool.next_job(self)) is not None:
                        browser = self._print(pw, browser, job)
                        job = None
                finally:
                    if browser is not None:
                        with contextlib.suppress(Exception):
                            browser.close()
        except BaseException as exc:  # noqa: BLE001 - the driver failed: the job says why
            if job is not None and not job.done.is_set():
                job.finish(ReportPdfError(f"Chromium could not print {job.source.name}: "
                                          f"{_first_line(exc)}", code="NBA388"))
            log.warning("PDF printer ended: %s", _first_line(exc))
        finally:
            self.pool.gone(self)

    def _print(self, pw: Any, browser: Any, job: _Job) -> Any:
        """Print ``job``; returns the browser to keep (None when it must be relaunched)."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            if job.cancelled.is_set() or job.left() <= 0:
                raise _timeout(job.source, "waiting for a free PDF printer")
            if browser is None or not browser.is_connected():
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=list(CHROMIUM_ARGS),
                                             timeout=job._ms())
                self.launches += 1
            job._render(browser)
            _count_print()
            job.finish(None)
        except PlaywrightTimeout as exc:
            job.finish(_timeout(job.source, _first_line(exc)))
        except PlaywrightError as exc:
            if job.left() <= 0:
                job.finish(_timeout(job.source, _first_line(exc)))
            else:
                job.finish(ReportPdfError(f"Chromium could not print {job.source.name}: "
                                          f"{_first_line(exc)}", code="NBA388"))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            job.finish(exc)
        if browser is not None and not browser.is_connected():
            return None
        return browser


class _PrinterPool:
    """The printers of this process and the queue of jobs they take (module docstring)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._lock = threading.Lock()
        self._printers: set[_Printer] = set()
        self._waiting = 0  # printers blocked in next_job

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            working = sum(1 for p in self._printers if not p.retired.is_set())
            if self._waiting < self._jobs.qsize() and working < self.size:
                printer = _Printer(self)
                self._printers.add(printer)
                printer.thread.start()

    def next_job(self, printer: _Printer) -> _Job | None:
        """The next job for ``printer``; None when it is retired or was idle for
        :data:`KEEP_SECONDS` (then it is retired here: :meth:`submit` counts on it no more)."""
        idle_until = time.monotonic() + KEEP_SECONDS
        while not printer.retired.is_set():
            left = idle_until - time.monotonic()
            if left <= 0:
                printer.retired.set()
                return None
            with self._lock:
                self._waiting += 1
            try:
                job = self._jobs.get(timeout=min(left, 1.0))
            except queue.Empty:
                job = None
            finally:
                with self._lock:
                    self._waiting -= 1
            if job is not None:
                if printer.retired.is_set():  # retired meanwhile: a working printer takes it
                    self.submit(job)
                    return None
                job.printer = printer
                return job
        return None

    def gone(self, printer: _Printer) -> None:
        with self._lock:
            self._printers.discard(printer)
            orphaned = not self._jobs.empty() and not any(
                not p.retired.is_set() for p in self._printers)
        if orphaned:  # jobs queued while the last printer was leaving: start one for them
            with self._lock:
                replacement = _Printer(self)
                self._printers.add(replacement)
            replacement.thread.start()

    def printers(self) -> list[_Printer]:
        with self._lock:
            return list(self._printers)

    def shutdown(self, timeout: float) -> None:
        while True:  # jobs nobody took yet are refused first (no printer starts for them)
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            job.finish(ReportPdfError("the PDF printer is shutting down", code="NBA388"))
        for printer in self.printers():
            printer.retired.set()
        deadline = time.monotonic() + timeout
        for printer in self.printers():
            printer.thread.join(max(deadline - time.monotonic(), 0.0))


_pool = _PrinterPool(MAX_PARALLEL)
_prints = 0
_prints_lock = threading.Lock()


def _count_print() -> None:
    global _prints
    with _prints_lock:
        _prints += 1


def _content_type(path: Path) -> str:
    return _MIME.get(path.suffix.lower(), "application/octet-stream")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _timeout(source: Path, why: str) -> ReportPdfError:
    return ReportPdfError(f"printing {source.name} to PDF ran past its time limit ({why})",
                          code="NBA387")


def _source(html_path: Path) -> Path:
    try:
        source = Path(html_path).resolve(strict=True)
        if not source.is_file():
            raise OSError("not a file")
        with source.open("rb") as fh:
            fh.read(1)
    except OSError as exc:
        raise ReportPdfError(f"cannot read the HTML report {html_path}: "
                             f"{exc.strerror or exc}", code="NBA386") from exc
    if source.suffix.lower() not in (".html", ".htm"):
        raise ReportPdfError(f"{html_path} is not an HTML file (.html)", code="NBA386")
    return source


def html_to_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 60.0,
                title: str | None = None) -> None:
    """Print the HTML report ``html_path`` to ``pdf_path`` (replaced atomically).

    ``title`` becomes the document's (and the PDF's) title. Files beside the report may be
    loaded by it; nothing else. Raises :class:`ReportPdfError`: NBA386 (report unreadable),
    NBA387 (not done within ``timeout`` seconds), NBA388 (Chromium/Playwright missing or
    failing). Blocks the calling thread; safe from any thread (see the module docstring).
    """
    source = _source(Path(html_path))
    target = Path(pdf_path)
    if not target.parent.is_dir():
        raise ReportPdfError(f"the folder of {target} does not exist", code="NBA388")
    _require_chromium()
    job = _Job(source, target, time.monotonic() + timeout, title)
    _pool.submit(job)
    if not job.done.wait(timeout + _GRACE):
        job.cancelled.set()  # the printer removes its temp file and never renames it
        if job.printer is not None:
            job.printer.retired.set()  # it hangs: a new printer takes the next jobs
        raise _timeout(source, "Chromium did not answer")
    if job.error is not None:
        if isinstance(job.error, NbappsError):
            raise job.error
        raise ReportPdfError(f"printing {source.name} failed: {_first_line(job.error)}",
                             code="NBA388") from job.error


def _require_chromium() -> None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        raise ReportPdfError(f"Python Playwright is not installed ({exc})",
                             code="NBA388") from exc
    if not Path(CHROMIUM).exists():
        raise ReportPdfError(f"{CHROMIUM} is not installed", code="NBA388")


def shutdown(timeout: float = 10.0) -> None:
    """Close every printer's Chromium (their jobs in progress end first, within ``timeout``)."""
    _pool.shutdown(timeout)


def printer_launches() -> int:
    """Chromium launches by the printers alive now (tests and benchmarks)."""
    return sum(p.launches for p in _pool.printers())


def prints() -> int:
    """Reports printed to PDF by this process so far (tests and benchmarks)."""
    return _prints


__all__ = ["CHROMIUM", "KEEP_SECONDS", "MAX_PARALLEL", "ORIGIN", "ReportPdfError",
           "html_to_pdf", "printer_launches", "prints", "shutdown"]
