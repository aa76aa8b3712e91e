"""App tickets end with the login session they were issued in (docs/dev/NOTES.md, "Tickets
outlive logout"; :mod:`nbapps.server.app_tickets`).

Real galleries serving apps (runner runtime on, in a thread): a viewer logs in, opens the app
frame and takes its ticket URL; after a logout (or a new password) that URL is refused with the
proxy's expired page within the identity cache period, while a ticket of another, still
signed-in browser of the same viewer keeps working. Tickets of anonymous viewers and of API
tokens are not bound. Most checks use the ticket path's ``~status`` (the frame's progress poll:
authorized like every app request, and it starts nothing); one test opens a real page and its
kernel socket, which is closed once the session ends.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from nbapps.server.app_tickets import AppTickets
from nbapps.server.identity import load_or_create_secret
from nbapps.server.proxy_websocket import AppWebSocketProxy
from tests.server_harness import Gallery, catalog_of, seed_version
from tests.test_app_browser import serving_gallery

SLUG = "tally"
#: longer than the identity cache (5 s) on a loaded machine
DEADLINE_S = 30.0


@contextmanager
def _apps_gallery(base: Path, args: list[str] | None = None) -> Iterator[Gallery]:
    """A gallery serving apps (runner runtime on) with one live app, stopped on exit."""
    with serving_gallery(base, args) as g:
        with catalog_of(g) as (cat, store):
            seeded = seed_version(cat, store, slug=SLUG, submitter="ana", title="Tally")
            cat.decide(seeded.version.id, "rita", "approve", "ok")
        yield g


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[Gallery]:
    with _apps_gallery(tmp_path_factory.mktemp("ticket-sessions")) as g:
        yield g


def _frame_ticket(browser: Any) -> str:
    """The ticket of the app frame's iframe, as a signed-in browser gets it."""
    frame = browser.get(f"/app/{SLUG}/open")
    assert frame.status_code == 200, frame.text[:500]
    src = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text)
    assert src, "no app iframe in the frame page"
    return src[1].split("/~t/")[1].split("/")[0]


def _kernel_socket_url(g: Gallery, browser: Any) -> str:
    """The kernel WebSocket URL of an app page opened with ``browser``'s frame ticket."""
    src = f"/apps/{SLUG}/~t/{_frame_ticket(browser)}/"
    page = httpx.get(f"{g.url}{src}", timeout=300)
    assert page.status_code == 200, page.text[:500]
    kid = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page.text)
    assert kid, page.text[:500]
    return f"{g.url.replace('http', 'ws', 1)}{src}api/kernels/{kid[1]}/channels?session_id=t"


def _status(g: Gallery, ticket: str) -> httpx.Response:
    """The ticket path's progress poll, without any cookie: the ticket is the credential."""
    with httpx.Client(base_url=g.url, timeout=60) as c:
        return c.get(f"/apps/{SLUG}/~t/{ticket}/~status")


def _refused_within(g: Gallery, ticket: str) -> httpx.Response:
    """Poll until the ticket is refused (or the deadline passes); the last answer."""
    deadline = time.monotonic() + DEADLINE_S
    r = _status(g, ticket)
    while r.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        r = _status(g, ticket)
    return r


def _assert_expired(r: httpx.Response) -> None:
    """The proxy's expired page: the same refusal as an expired or damaged ticket."""
    assert r.status_code == 403, (r.status_code, r.text[:300])
    assert "NBA340" in r.text and "expired" in r.text, r.text[:500]


def _payload(ticket: str) -> list[Any]:
    part = ticket.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_logout_ends_the_tickets_of_that_session_only(gallery):
    with gallery.browser("vic") as laptop:
        mine = _frame_ticket(laptop)
        assert _status(gallery, mine).status_code == 200  # vic's live sessions now cached
        with gallery.browser("vic") as phone:  # a login since: its ticket works at once
            other = _frame_ticket(phone)
            assert _status(gallery, other).status_code == 200
            _logout_ends_one(gallery, laptop, mine, other)


def _logout_ends_one(gallery: Gallery, laptop: Any, mine: str, other: str) -> None:
    """Log the laptop out: its ticket is refused, the phone's still works."""
    assert mine != other  # one per session
    assert _frame_ticket(laptop) == mine  # a reload keeps the URL (load balancer, cache)
    binding = _payload(mine)[-1]
    assert isinstance(binding, str) and len(binding) >= 20
    cookies = "".join(c.value for c in laptop.http.cookies.jar)
    assert binding not in cookies  # the binding is a digest, not the session id
    assert _status(gallery, mine).status_code == 200
    assert _status(gallery, other).status_code == 200
    assert laptop.post_form("/logout").status_code == 302
    _assert_expired(_refused_within(gallery, mine))
    assert _status(gallery, other).status_code == 200  # the phone is still signed in
    # the frame, reloaded as the expired page asks, leads to the login page
    r = laptop.get(f"/app/{SLUG}/open")
    assert r.status_code == 302 and "/login" in r.headers["location"]


def test_a_new_password_ends_the_tickets(gallery):
    with gallery.browser("ana") as ana:
        ticket = _frame_ticket(ana)
        assert _status(gallery, ticket).status_code == 200
        with catalog_of(gallery) as (cat, _):  # as another replica or the CLI would
            cat.set_password("ana", "a-brand-new-password-1", actor="test")
        _assert_expired(_refused_within(gallery, ticket))


def test_a_forged_binding_is_refused(gallery):
    with gallery.browser("rob") as rob:
        ticket = _frame_ticket(rob)
    payload, mac = ticket.split(".")
    body = _payload(ticket)
    body[-1] = "A" * len(body[-1])
    forged = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode())
    _assert_expired(_status(gallery, f"{forged.decode().rstrip('=')}.{mac}"))
    # genuinely signed (with the gallery's own key) but bound to a session that never existed
    tickets = AppTickets.from_secret(load_or_create_secret(gallery.data_dir))
    uid = body[3]
    stray = tickets.issue(SLUG, "rob", uid, session_hash="0" * 64)
    _assert_expired(_status(gallery, stray))
    assert _status(gallery, ticket).status_code == 200  # rob's own still works


def test_api_tokens_get_unbound_tickets_and_cookies_bound_ones(gallery):
    """The proxy's own tickets (a navigation to ``/apps/<slug>/`` into a frame, without one)
    follow the same rule as the app frame's."""
    iframe = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate"}
    with gallery.client("adam") as api:
        r = api.get(f"/apps/{SLUG}/", headers=iframe, follow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    token_ticket = r.headers["location"].split("/~t/")[1].split("/")[0]
    assert _payload(token_ticket)[-1] == ""
    with gallery.browser("adam") as adam:
        r = adam.get(f"/apps/{SLUG}/", headers=iframe, follow_redirects=False)
        assert r.status_code == 302, r.text[:300]
        cookie_ticket = r.headers["location"].split("/~t/")[1].split("/")[0]
        assert _payload(cookie_ticket)[-1] != ""
        assert _status(gallery, cookie_ticket).status_code == 200
        assert adam.post_form("/logout").status_code == 302
    _assert_expired(_refused_within(gallery, cookie_ticket))
    assert _status(gallery, token_ticket).status_code == 200  # no session to end


def test_an_anonymous_viewers_ticket_is_unbound(tmp_path):
    with _apps_gallery(tmp_path, ["--allow-anonymous-apps"]) as g:
        with g.browser() as anonymous:
            ticket = _frame_ticket(anonymous)
        assert _payload(ticket)[2:] == ["", 0, _payload(ticket)[4], ""]
        assert _status(g, ticket).status_code == 200
        with g.browser("vic") as vic:  # signed in, the same app's ticket is bound
            bound = _frame_ticket(vic)
            assert _payload(bound)[-1] != ""
            vic.post_form("/logout")
        _assert_expired(_refused_within(g, bound))
        assert _status(g, ticket).status_code == 200


@pytest.mark.kernel
def test_an_open_kernel_socket_closes_when_its_session_ends(gallery, monkeypatch):
    monkeypatch.setattr(AppWebSocketProxy, "recheck_seconds", 0.5)
    with gallery.browser("rita") as rita:
        url = _kernel_socket_url(gallery, rita)

        async def watch() -> tuple[Any, int | None]:
            conn = await websocket_connect(HTTPRequest(url, headers={"Origin": "null"}))
            rita.post_form("/logout")  # a thread of its own: blocking here is fine
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                left = deadline - time.monotonic()
                try:
                    msg = await asyncio.wait_for(conn.read_message(), timeout=left)
                except asyncio.TimeoutError:
                    break
                if msg is None:
                    return conn.close_code, None
            conn.close()
            return "still open", None

        async def reconnect() -> int:
            try:
                conn = await websocket_connect(HTTPRequest(url, headers={"Origin": "null"}))
            except HTTPClientError as exc:
                return exc.code
            conn.close()
            return 101

        code, _ = asyncio.run(watch())
        assert code == 1008, code
        assert asyncio.run(reconnect()) == 403


def test_a_binding_names_one_session_and_reveals_none():
    tickets = AppTickets(lifetime=3600)
    a, b = "a" * 64, "b" * 64
    token = tickets.issue("demo", "ann", 7, session_hash=a, now=1_000_000)
    ticket = tickets.verify(token, "demo", now=1_000_100)
    assert ticket is not None and ticket.session == tickets.binding(a)
    assert a not in token and tickets.binding(a) != tickets.binding(b)
    assert AppTickets(lifetime=3600).binding(a) != tickets.binding(a)  # keyed
    assert tickets.is_bound_to(ticket, frozenset({a, b}))
    assert not tickets.is_bound_to(ticket, frozenset({b}))
    # deterministic per viewer, app, session and time window; a new session, a new ticket
    assert tickets.issue("demo", "ann", 7, session_hash=a, now=1_000_010) == token
    assert tickets.issue("demo", "ann", 7, session_hash=b, now=1_000_010) != token
    unbound = tickets.verify(tickets.issue("demo", "ann", 7), "demo")
    assert unbound is not None and unbound.session == ""
    assert not tickets.is_bound_to(unbound, frozenset({a}))
    # anonymous tickets are never bound, whatever is passed
    assert tickets.verify(tickets.issue("demo", session_hash=a), "demo").session == ""


def test_a_catalog_outage_does_not_close_open_kernel_sockets(gallery, monkeypatch):
    """While the catalog is away (NBA313: a database restart), the socket's re-checks cannot
    decide: the viewer's open app keeps working (its kernel answers) instead of every open
    app being closed at once; once the catalog is back, an ended session still closes it.
    The outage is injected where the re-check asks the gallery (a real database outage would
    take every other test's database with it)."""
    from nbapps.catalog.db import CatalogUnavailable
    from nbapps.server import proxy_websocket

    monkeypatch.setattr(AppWebSocketProxy, "recheck_seconds", 0.3)
    real = proxy_websocket.authorized
    asked: list[float] = []

    async def catalog_away(*args: Any) -> bool:
        asked.append(time.monotonic())
        raise CatalogUnavailable("the catalog database is not reachable")

    with gallery.browser("vic") as vic:
        url = _kernel_socket_url(gallery, vic)

        async def kernel_info(conn: Any) -> bool:
            msg_id = f"info-{time.monotonic()}"
            await conn.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "kernel_info_request",
                           "username": "t", "session": "t", "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "content": {}, "channel": "shell"}))
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                raw = await asyncio.wait_for(conn.read_message(), deadline - time.monotonic())
                if raw is None:
                    return False
                if isinstance(raw, str) and json.loads(raw).get("parent_header", {}).get(
                        "msg_id") == msg_id:
                    return True
            return False

        async def watch() -> tuple[bool, Any]:
            conn = await websocket_connect(HTTPRequest(url, headers={"Origin": "null"}))
            monkeypatch.setattr(proxy_websocket, "authorized", catalog_away)
            deadline = time.monotonic() + DEADLINE_S
            while len(asked) < 4 and time.monotonic() < deadline:  # several re-checks failed
                await asyncio.sleep(0.1)
            assert len(asked) >= 4, asked
            served = await kernel_info(conn)
            monkeypatch.setattr(proxy_websocket, "authorized", real)
            vic.post_form("/logout")
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                try:
                    msg = await asyncio.wait_for(conn.read_message(),
                                                 deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
                if msg is None:
                    return served, conn.close_code
            conn.close()
            return served, "still open"

        served, code = asyncio.run(watch())
        assert served, "the kernel socket stopped answering during the outage"
        assert code == 1008, code
