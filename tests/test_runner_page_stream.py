"""A page rendered for a new kernel goes out in few writes, and still progressively
(nbapps.runner.page_stream): pieces produced together share a flush; what is rendered before the
page waits is sent while it waits."""
from __future__ import annotations

import asyncio
import http.client
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import tornado.httpserver
import tornado.netutil
import tornado.web
from nbformat.v4 import new_code_cell

from nbapps.runner import page_stream
from tests.test_runner_fixtures import (
    Gallery,
    LoopThread,
    fast_settings,
    widget_app_notebook,
    write_bundle,
)

PIECES = 300


class Page(tornado.web.RequestHandler):
    """A handler with Voilà's shape: ``get_generator`` yields the page's pieces."""

    get = page_stream.write_coalesced
    gate: asyncio.Event

    async def get_generator(self, path: str | None = None) -> AsyncIterator[str]:
        kind = self.get_argument("kind")
        if kind == "gate":  # pieces produced together, a wait, more pieces
            for i in range(PIECES):
                yield f"a{i};"
            try:
                await asyncio.wait_for(self.gate.wait(), 10)
                yield "GATE-OPENED;"
            except asyncio.TimeoutError:
                yield "GATE-TIMEOUT;"
            for i in range(PIECES):
                yield f"b{i};"
        else:  # Voilà's path for a kernel not from the pool: each piece through a queue
            queue: asyncio.Queue[str | None] = asyncio.Queue()

            async def produce() -> None:
                for i in range(PIECES):
                    await queue.put(f"q{i};")
                await queue.put(None)

            task = asyncio.ensure_future(produce())
            while (piece := await asyncio.wait_for(queue.get(), 10)) is not None:
                yield piece
            await task


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, LoopThread, asyncio.Event]]:
    loop = LoopThread()
    gate = loop.run(_event())
    Page.gate = gate
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")

    async def listen() -> tornado.httpserver.HTTPServer:
        srv = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/page", Page)]))
        srv.add_sockets(sockets)
        return srv

    srv = loop.run(listen())
    try:
        yield sockets[0].getsockname()[1], loop, gate
    finally:
        loop.loop.call_soon_threadsafe(srv.stop)
        loop.close()


async def _event() -> asyncio.Event:
    return asyncio.Event()


def chunks(port: int, kind: str, on_first: Any = None) -> list[str]:
    """The page's HTTP chunks as sent (``on_first`` is called once the first one is read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/page?kind={kind}", headers={"Connection": "close"})
    resp = conn.getresponse()
    assert resp.status == 200
    if resp.getheader("Transfer-Encoding") != "chunked":  # never flushed before its end
        body = resp.read().decode()
        conn.close()
        return [body]
    resp.chunked = False  # read the framing ourselves
    out: list[str] = []
    while True:
        size = int(resp.fp.readline().strip(), 16)
        if size == 0:
            break
        out.append(resp.fp.read(size).decode())
        resp.fp.readline()
        if len(out) == 1 and on_first is not None:
            on_first()
    conn.close()
    return out


def test_pieces_made_together_are_sent_together_and_before_the_page_waits(server):
    port, loop, gate = server
    loop.loop.call_soon_threadsafe(gate.clear)
    got = chunks(port, "gate", on_first=lambda: loop.loop.call_soon_threadsafe(gate.set))
    first = "".join(f"a{i};" for i in range(PIECES))
    rest = "GATE-OPENED;" + "".join(f"b{i};" for i in range(PIECES))
    # one flush for the 300 pieces, sent while the page waited (the gate opens only once the
    # client has read them), one for the rest
    assert got == [first, rest]


def test_pieces_passed_through_a_queue_are_coalesced(server):
    port, _, _ = server
    got = chunks(port, "queue")
    assert "".join(got) == "".join(f"q{i};" for i in range(PIECES))
    # without coalescing: one chunk per piece; each flush waits for 2 ms without a new piece or
    # 20 ms, which a loaded machine may reach a few times
    assert len(got) <= 10, len(got)


def test_install_keeps_the_handlers_authentication():
    page_stream.install()
    page_stream.install()  # idempotent
    from voila.tornado.handler import TornadoVoilaHandler

    assert TornadoVoilaHandler.get.nbapps_coalesced
    assert TornadoVoilaHandler.get.__wrapped__ is page_stream.write_coalesced


GATE_CELL = """import os, socket
if os.environ.get("VOILA_PREHEAT") == "True":
    print("POOLED")
else:
    try:
        with socket.create_connection(("127.0.0.1", {port}), timeout=20) as s:
            s.settimeout(20)
            print("GATE-OPENED" if s.recv(1) == b"g" else "GATE-CLOSED")
    except OSError as exc:
        print("GATE-TIMEOUT", exc)"""


@pytest.mark.kernel
def test_a_runner_sends_a_new_kernels_page_while_a_cell_still_runs(tmp_path):
    """Through a real runner and the proxy, with no pool: the output of the cells before a cell
    that waits reaches the viewer while that cell runs (the cell waits for the test to see it)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    nb = widget_app_notebook()
    nb.cells.insert(-1, new_code_cell("print('BEFORE-GATE')", metadata={"tags": ["widget"]}))
    nb.cells.insert(-1, new_code_cell(GATE_CELL.format(port=port),
                                      metadata={"tags": ["widget"]}))
    app = write_bundle(tmp_path / "a", nb)
    g = Gallery(tmp_path, {"a": app}, runner=fast_settings(pool_size=0, custom_pool_size=0))
    opened, page_ended = threading.Event(), threading.Event()

    def open_gate_once_seen(text: list[str]) -> None:
        """Accept the cell's connection; send the byte once the page shows BEFORE-GATE (polled
        until the page has ended)."""
        conn, _ = listener.accept()
        with conn:
            while not opened.is_set():
                if "BEFORE-GATE" in "".join(text):
                    conn.sendall(b"g")
                    opened.set()
                    return
                page_ended.wait(0.02)
                if page_ended.is_set():
                    return

    try:
        g.start()
        g.ready("a", warm=False)
        text: list[str] = []
        listener.settimeout(60)
        gatekeeper = threading.Thread(target=open_gate_once_seen, args=(text,), daemon=True)
        gatekeeper.start()
        with httpx.stream("GET", g.url("/apps/a/"), timeout=60) as resp:
            assert resp.status_code == 200
            for piece in resp.iter_text():
                text.append(piece)
        page_ended.set()
        gatekeeper.join(10)
        page = "".join(text)
        assert "GATE-OPENED" in page, page[-2000:]
        assert "RESULT 3 x 0.5 9" in page
        assert page.rstrip().endswith("</html>")
    finally:
        listener.close()
        g.stop()
