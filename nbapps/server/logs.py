"""Log formats of the gallery server: ``key=value`` text (logfmt style) or one JSON object per
line, both carrying the ``extra`` fields of a record (status, duration, user, ...)."""
from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from .request_id import RequestIdFilter


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with ``Z``), level, logger, message and any
    ``extra`` fields."""

    converter = time.gmtime

    _skip = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
        "message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in self._skip and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.levelno >= logging.DEBUG:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


class KeyValueFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` (the ``extra`` fields, logfmt style)."""

    _skip = JSONFormatter._skip

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(f"{k}={_logfmt(v)}" for k, v in record.__dict__.items()
                          if k not in self._skip and not k.startswith("_"))
        return f"{base} {extras}" if extras else base


def _logfmt(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text


class PeerResetFilter(logging.Filter):
    """Keeps tornado's "Exception after Future was cancelled" for a connection reset by its peer
    out of the log unless ``nbapps`` logs at DEBUG.

    Tornado logs it at ERROR, with a traceback, when a peer (a browser closing a page, a runner
    that stopped) resets a connection after the code reading it had stopped waiting: nothing
    failed, and no request is affected. Seen once in the demo's log in CI. The one reader
    known to do so, a runner's health check cancelled with its start while the runner was
    stopped, now fetches through :func:`nbapps.runner.fetch.fetch` and logs nothing; this
    filter stays for readers not found yet. Every other record of that logger, and the same
    message with any other exception, passes unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ConnectionError) and \
                str(record.msg).startswith("Exception after Future was cancelled"):
            return logging.getLogger("nbapps").isEnabledFor(logging.DEBUG)
        return True


def configure_logging(style: str, level: int | str) -> None:
    """Send the ``nbapps`` loggers (and tornado's warnings) to stderr in ``style``
    ("json" or "text"). Called by the server application only: the library never configures
    logging."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    if style == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: "
                                               "%(message)s"))
    root = logging.getLogger("nbapps")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in ("tornado.access", "tornado.application", "tornado.general"):
        tl = logging.getLogger(name)
        tl.handlers[:] = [handler]
        tl.setLevel(logging.WARNING)
        tl.propagate = False
    application = logging.getLogger("tornado.application")
    if not any(isinstance(f, PeerResetFilter) for f in application.filters):
        application.addFilter(PeerResetFilter())
