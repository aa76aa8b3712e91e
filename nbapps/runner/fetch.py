"""Tornado HTTP fetches that their caller may stop waiting for.

When a coroutine awaiting ``AsyncHTTPClient.fetch`` is cancelled (a runner's start given up
for a newer version, a warm-up stopped), asyncio cancels the fetch's future, but tornado goes on
with the request. If its connection then fails (the runner was stopped, the peer reset it),
tornado logs "Exception after Future was cancelled" at ERROR with a traceback, although nothing
is wrong: nobody was waiting. :func:`fetch` lets the request finish on its own future, which is
never cancelled, and retrieves its outcome, so the caller's cancellation stays silent.
"""
from __future__ import annotations

import asyncio
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPRequest, HTTPResponse


async def fetch(client: AsyncHTTPClient, request: HTTPRequest, **kwargs: Any) -> HTTPResponse:
    """``await client.fetch(request, **kwargs)``; cancelling the caller leaves the request to
    end by itself (see the module docstring)."""
    future = client.fetch(request, **kwargs)
    future.add_done_callback(_retrieved)
    return await asyncio.shield(future)


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark the outcome seen: an error nobody waits for is no "never retrieved" warning."""
    if not future.cancelled():
        future.exception()
