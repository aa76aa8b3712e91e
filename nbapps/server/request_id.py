"""A request id on every request: taken from a sane incoming ``X-Request-Id`` (a load balancer's,
such as nginx's ``$request_id``) or made here, then written in the access log line, sent back in
the response header and passed to app runners on proxied requests, so one id joins the load
balancer's, the gallery's and the runner's log lines of one request.

"Sane" is 1 to 128 characters of letters, digits and ``-._:`` (UUIDs, hex, ULIDs): anything else
(a log-injection attempt, a huge value) is replaced, never echoed.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import secrets
from typing import Any

from tornado import httputil, web

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ATTR = "_nbapps_request_id"
#: the id of the request being handled: set where tornado creates a request's handler task (in
#: the connection's task, which the handler's task copies), read by :class:`RequestIdFilter`
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nbapps_request_id", default=None)


def new_request_id() -> str:
    """32 hex digits (the shape of nginx's ``$request_id``)."""
    return secrets.token_hex(16)


def sane_request_id(value: str | None) -> str | None:
    """``value`` if it may be used as a request id, else None."""
    value = (value or "").strip()
    return value if _SANE.fullmatch(value) else None


def request_id(request: httputil.HTTPServerRequest) -> str:
    """The id of ``request``: decided once (the incoming header if sane, else a new one)."""
    rid: str | None = getattr(request, _ATTR, None)
    if rid is None:
        rid = sane_request_id(request.headers.get(HEADER)) or new_request_id()
        setattr(request, _ATTR, rid)
    return rid


class RequestIdTransform(web.OutputTransform):
    """Adds ``X-Request-Id`` to every response of the application (pages, API, static files,
    errors, proxied apps), whatever a handler did to its headers before."""

    def __init__(self, request: httputil.HTTPServerRequest) -> None:
        self.request_id = request_id(request)
        # made just before the handler's task: every log line of the request can name it
        current_request_id.set(self.request_id)

    def transform_first_chunk(self, status_code: int, headers: httputil.HTTPHeaders,
                              chunk: bytes, finishing: bool) -> tuple[int, Any, bytes]:
        headers[HEADER] = self.request_id
        return status_code, headers, chunk


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to records logged by a request's own handler task, unless the record
    has one. Tasks a request starts (a runner start, a flush) copy the context too, but may
    outlive it: they are not the handler's task, so their lines get no id rather than a stale
    one; nor does work sent to the thread pool (no context is copied there)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = current_request_id.get()
            if rid is not None and _in_handler_task():
                record.request_id = rid
        return True


def _in_handler_task() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no running loop in this thread
        return False
    code = getattr(task.get_coro(), "cr_code", None) if task is not None else None
    return code is _HANDLER_CODE


#: the coroutine tornado runs each request's handler in (its own task)
_HANDLER_CODE = web.RequestHandler._execute.__code__
