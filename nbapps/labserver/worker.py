"""Worker process of one lab job: ``python -m nbapps.labserver.worker`` (started by jobs.py).

Reads the job spec as JSON on stdin (the API token travels here, never on the command line) and
writes one JSON event per line on its original stdout: ``progress`` (step, message), then
``result`` or ``error``. Anything the libraries print goes to stderr, which the server logs.
SIGTERM (cancel) stops the run: the kernel is shut down on the way out.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from ..errors import NbappsError

log = logging.getLogger("nbapps.labserver.worker")


class Cancelled(BaseException):
    """Raised in the main thread by SIGTERM."""


class Events:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, event: str, **data: Any) -> None:
        self.stream.write(json.dumps({"event": event, **data}, default=str) + "\n")
        self.stream.flush()

    def progress(self, step: str, message: str) -> None:
        self.emit("progress", step=step, message=message)


def _settings(spec: dict[str, Any]) -> Any:
    from ..validate import ValidationSettings

    settings = ValidationSettings(execute=bool(spec.get("execute", True)))
    for key in ("cell_timeout", "total_timeout"):
        if spec.get(key):
            setattr(settings, key, float(spec[key]))
    return settings


def _describe_run(path: Path) -> str:
    """"Running 4 code cells with the default parameters and 2 test sets" (best effort)."""
    try:
        from ..notebook import load_notebook

        app = load_notebook(path)
        cells = sum(1 for c in app.nb.cells if c.cell_type == "code")
        sets = len(app.meta.test_parameters)
        extra = f" and {sets} test parameter set{'s' if sets != 1 else ''}" if sets else ""
        return f"Checking and running {cells} code cells with the default parameters{extra}"
    except Exception:  # noqa: BLE001 - only a progress message
        return "Checking and running the notebook"


def validate(spec: dict[str, Any], events: Events) -> dict[str, Any]:
    from ..validate import validate_notebook

    path = Path(spec["path"])
    settings = _settings(spec)
    events.progress("validate", _describe_run(path) if settings.execute
                    else "Checking the notebook (not running it)")
    report = validate_notebook(path, settings)
    return {"report": report.to_dict()}


def publish(spec: dict[str, Any], events: Events) -> dict[str, Any]:
    from ..bundle import build_bundle, pack_bundle
    from ..client import GalleryClient
    from ..validate import validate_notebook
    from .gallery import notebook_slug

    path = Path(spec["path"])
    gallery, token = spec["gallery_url"], spec["token"]
    # the app is the notebook's identity, recorded at its first publish; never the title's slug
    slug = spec.get("slug") or notebook_slug(path)
    events.progress("validate", _describe_run(path))
    report = validate_notebook(path, _settings({**spec, "execute": True}))
    if not report.ok:
        return {"outcome": "blocked", "report": report.to_dict()}
    events.progress("bundle", "Building the bundle")
    with tempfile.TemporaryDirectory(prefix="nbapps-lab-") as tmp:
        info = build_bundle(path, Path(tmp) / "bundle", report=report)
        archive = pack_bundle(info.path)
    events.progress("submit", f"Submitting the bundle ({len(archive) // 1024 + 1} KiB) to "
                              f"{gallery}")
    with GalleryClient(gallery, token) as client:
        submission = client.submit(archive, slug=slug or None)
    return {"outcome": "submitted", "submission": submission, "report": report.to_dict(),
            "bundle": {"sha256": info.sha256}}


JOBS = {"validate": validate, "publish": publish}


def _stop_children(grace: float = 2.0) -> None:
    """Terminate the kernels this worker started (they run in their own sessions)."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Cancelled()


def main() -> int:
    # keep the real stdout for events; everything printed by libraries goes to stderr
    events = Events(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        spec = json.loads(sys.stdin.read())
        result = JOBS[spec["kind"]](spec, events)
    except Cancelled:
        events.emit("cancelled")
        _stop_children()
        os._exit(130)  # no waiting for library threads that may still be running the notebook
    except NbappsError as exc:
        events.emit("error", error=exc.to_dict())
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the user as a job error
        log.error("job failed", exc_info=True)
        events.emit("error", error={
            "error": "NBA385", "message": f"{type(exc).__name__}: {str(exc)[:300]}",
            "hint": "This is a bug or an environment problem; see the Jupyter server log."})
        return 1
    events.emit("result", result=result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
