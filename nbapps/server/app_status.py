"""Where an app is on its way to the viewer: ready, starting (which step), busy or failed.

Read by the app frame's progress card (``GET <base>api/apps/<slug>/status``) and by the proxy's
own waiting page. It only *reads* the runtime: asking never starts a runner (the page request
does that). Failures are shown with a reference number, never with their details: those can hold
server paths (the runner's log file) and are logged once with the same reference instead.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger("nbapps.server.apps")

#: the steps of a cold start, as the viewer reads them
STEPS = (
    "Preparing the approved version",
    "Starting the app's server",
    "Starting kernels",
    "Running the notebook",
)


@dataclass(frozen=True)
class AppStatus:
    """One answer to "where is my app?" (JSON for the frame, values for the waiting page)."""

    #: ready | starting | busy | unavailable | stopped | missing | off
    state: str
    title: str
    message: str
    #: step k of n of a cold start (0 when not starting)
    step: int = 0
    steps: int = len(STEPS)
    #: a finer count within the step ("2 of 3 kernels"), 0/0 when none
    done: int = 0
    total: int = 0
    #: pages waiting (for a render slot, or in the app's queue) ahead of a new one
    queue: int = 0
    #: this viewer's place in the app's queue (1 is next; 0: not queued)
    place: int = 0
    reference: str = ""
    retry_after: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _References:
    """Reference numbers of failures; each is logged with its details at most every 10 min."""

    def __init__(self, quiet: float = 600.0) -> None:
        self.quiet = quiet
        self._logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def of(self, slug: str, detail: str) -> str:
        digest = hashlib.sha256(f"{slug}\n{detail}".encode()).hexdigest()[:8].upper()
        ref = f"{digest[:4]}-{digest[4:]}"
        now = time.monotonic()
        with self._lock:
            last = self._logged.get(ref)
            fresh = last is None or now - last > self.quiet
            if fresh:
                if len(self._logged) > 1000:
                    self._logged.clear()
                self._logged[ref] = now
        if fresh:
            log.error("app %s unavailable [ref %s]: %s", slug, ref, detail or "no detail",
                      extra={"slug": slug, "reference": ref})
        return ref


REFERENCES = _References()


def failure_reference(slug: str, detail: str) -> str:
    """The reference number viewers see for this failure (logged with ``detail``)."""
    return REFERENCES.of(slug, detail)


def _pool_progress(runner: Any) -> tuple[int, int, int]:
    """(step, done, total) of a starting runner, from its process and its status file."""
    if getattr(runner, "proc", None) is None:
        return 1, 0, 0
    status = runner.read_status() if hasattr(runner, "read_status") else {}
    pools = status.get("pools") if isinstance(status, dict) else None
    if not pools:
        return 2, 0, 0
    settings = getattr(runner, "settings", None)
    info = getattr(runner, "info", None)
    want = max(getattr(settings, "pool_size", 1), 0)
    custom = max(getattr(settings, "custom_pool_size", 0), 0) \
        if getattr(info, "has_custom", False) else 0
    total = want + custom
    started = sum(int(p.get("started", 0)) for p in pools.values() if isinstance(p, dict))
    if started < total:
        return 3, started, total
    ready = sum(int(p.get("rendered", 0)) + int(p.get("waiting", 0))
                for p in pools.values() if isinstance(p, dict))
    return 4, min(ready, total), total


async def app_status(runtime: Any, slug: str, title: str = "") -> AppStatus:
    """The status of ``slug`` in ``runtime`` (a :class:`~nbapps.runner.supervisor.Supervisor`,
    or None when this gallery serves no apps)."""
    if runtime is None or not hasattr(runtime, "slot_for"):
        return AppStatus("off", title or slug, "Apps cannot be opened on this server "
                         "(its app runtime is off).")
    try:
        slot = await runtime.slot_for(slug)
    except Exception as exc:  # the catalog or the store failed: a reference, not a 500
        return AppStatus("unavailable", title or slug, "The app could not be loaded.",
                         reference=failure_reference(slug, f"resolving the app: {exc}"),
                         retry_after=10)
    if slot is None:
        return AppStatus("missing", title or slug, "This app does not exist or is not live.")
    title = title or slot.title
    live = slot.live
    from ..runner.process import RunnerState

    if live is not None and live.state == RunnerState.READY and live.alive():
        waiting = getattr(runtime, "queue_length", None)
        queued = int(waiting(slug)) if waiting is not None else 0
        if queued:
            return AppStatus("busy", title, "This app has as many viewers as it can take: "
                             "new viewers wait in its queue.", queue=queued)
        queue = int(getattr(live, "queued_renders", 0))
        if queue:
            return AppStatus("busy", title, "Many people are opening this app right now: "
                             "you are in the queue.", queue=queue)
        return AppStatus("ready", title, "Ready.")
    pending = slot.pending
    if pending is not None:
        step, done, total = _pool_progress(pending)
        return AppStatus("starting", title, STEPS[step - 1], step=step, done=done, total=total)
    if slot.failures:
        retry = max(int(slot.retry_at - time.monotonic()) + 1, 1)
        return AppStatus("unavailable", title, "The app failed to start; it will be "
                         "restarted.", reference=failure_reference(slug, slot.last_error),
                         retry_after=retry)
    if slot.starting is not None and not slot.starting.done():
        return AppStatus("starting", title, STEPS[0], step=1)
    return AppStatus("stopped", title, "The app starts when it is opened.")
