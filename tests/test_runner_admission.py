"""Admission leases: the runner counts what the proxy holds (no kernels needed here)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nbapps.runner.admission import RunnerBusy
from nbapps.runner.config import RunnerSettings
from nbapps.runner.process import AppRelease, Runner


def runner(tmp_path: Path, **settings) -> Runner:
    return Runner(AppRelease("a", "v1", tmp_path), RunnerSettings(**settings), tmp_path,
                  tmp_path)


def test_request_and_socket_leases_count_until_released_once(tmp_path):
    r = runner(tmp_path)
    assert not r.busy()
    with r.hold("request") as req:
        sock = r.hold("socket")
        assert (r.active_requests, r.open_websockets) == (1, 1) and r.busy()
    assert req.released and r.active_requests == 0 and r.busy()
    sock.release()
    sock.release()  # idempotent: a close seen twice does not count twice
    assert (r.active_requests, r.open_websockets) == (0, 0) and not r.busy()


def test_render_queue_serves_in_order_and_refuses_when_full(tmp_path):
    r = runner(tmp_path, max_concurrent_renders=1, max_queued_renders=1)
    order: list[str] = []

    async def scenario() -> None:
        first = await r.render_slot()
        waiting = asyncio.ensure_future(r.render_slot())
        await asyncio.sleep(0)
        assert r.queued_renders == 1 and not waiting.done()
        with pytest.raises(RunnerBusy):
            await r.render_slot()
        order.append("first")
        first.release()
        second = await asyncio.wait_for(waiting, 5)
        order.append("second")
        assert r.queued_renders == 0
        async with second:
            pass
        async with await r.render_slot():  # the slot came back
            order.append("third")

    asyncio.run(scenario())
    assert order == ["first", "second", "third"]


def test_a_cancelled_wait_leaves_the_queue(tmp_path):
    r = runner(tmp_path, max_concurrent_renders=1, max_queued_renders=5)

    async def scenario() -> None:
        held = await r.render_slot()
        waiter = asyncio.ensure_future(r.render_slot())
        await asyncio.sleep(0)
        assert r.queued_renders == 1
        waiter.cancel()  # the viewer left
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert r.queued_renders == 0
        held.release()
        async with await asyncio.wait_for(r.render_slot(), 5):
            pass

    asyncio.run(scenario())
