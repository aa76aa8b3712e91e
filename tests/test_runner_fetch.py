"""A fetch its caller stopped waiting for, whose connection the peer then resets, logs nothing
(tornado logged "Exception after Future was cancelled" at ERROR: a runner's health check,
cancelled with its start, met the runner's stop; it put a traceback in the demo's log)."""
from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from nbapps.runner.fetch import fetch


class ResettingServer:
    """Accepts one HTTP request, answers nothing until told to, then resets the connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.got_request = threading.Event()
        self.reset_now = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(65536)
        self.got_request.set()
        self.reset_now.wait(30)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # with linger 0: RST
        self.sock.close()


async def _cancel_then_reset(start: Callable[[AsyncHTTPClient, HTTPRequest], Awaitable[Any]]
                             ) -> None:
    server = ResettingServer()
    client = AsyncHTTPClient(force_instance=True)
    try:
        task = asyncio.ensure_future(start(client, HTTPRequest(
            f"http://127.0.0.1:{server.port}/health", request_timeout=30)))
        while not server.got_request.is_set():
            await asyncio.sleep(0.01)  # the server thread's event (no loop-side signal)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        server.reset_now.set()
        server.thread.join(10)
        for _ in range(20):  # the client reads the reset on one of its next loop turns
            await asyncio.sleep(0.01)
    finally:
        client.close()
    gc.collect()  # a never-retrieved exception is reported when its future is collected


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


@contextmanager
def logged_errors() -> Iterator[list[str]]:
    """ERROR records of tornado's application logger and asyncio's, as they are emitted,
    whatever an in-process gallery of an earlier test did to those loggers (its
    ``configure_logging`` stops their propagation and filters this very record)."""
    handler = _Errors()
    saved = []
    for name in ("tornado.application", "asyncio"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.filters[:], logger.level, logger.disabled))
        logger.filters[:] = []
        logger.setLevel(logging.ERROR)
        logger.disabled = False
        logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        for logger, filters, level, disabled in saved:
            logger.removeHandler(handler)
            logger.filters[:] = filters
            logger.setLevel(level)
            logger.disabled = disabled


def test_a_plain_fetch_given_up_then_reset_logs_an_error():
    """The failure this module prevents, reproduced (so the next test is not vacuous)."""
    with logged_errors() as errors:
        asyncio.run(_cancel_then_reset(lambda c, r: c.fetch(r, raise_error=False)))
    assert any("Exception after Future was cancelled" in e for e in errors), errors


def test_our_fetch_given_up_then_reset_logs_nothing():
    with logged_errors() as errors:
        asyncio.run(_cancel_then_reset(lambda c, r: fetch(c, r, raise_error=False)))
    assert errors == []
