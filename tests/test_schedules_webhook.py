"""The scheduler's webhook deliveries (nbapps.schedules.webhook) against a real HTTP server:
signed bodies a receiver can verify, retries of failed POSTs with one delivery id, a slow
receiver that does not hold up the caller, and a stop that does not hang."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from nbapps.schedules.webhook import SIGNATURE_HEADER, WebhookSender

SECRET = "a shared secret"


@dataclass
class Receiver:
    url: str
    #: (headers, raw body) of every POST, failed ones included
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: answer 500 to this many POSTs first
    fail_first: int = 0
    #: set: answer at once; clear: hold each answer until it is set (or 30 s)
    release: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)

    def wait_posts(self, count: int) -> None:
        wait_until(lambda: len(self.posts) >= count, f"{count} POSTs")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` (deliveries happen on the sender's thread) until true or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not seen in {timeout} s: {what}"
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")
    state.release.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.started.set()
            state.release.wait(30)
            state.posts.append((dict(self.headers.items()), body))
            failing = len(state.posts) <= state.fail_first
            self.send_response(500 if failing else 204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=t0ken"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def test_a_receiver_can_verify_the_signature(receiver):
    sender = WebhookSender(receiver.url, secret=SECRET)
    try:
        delivery = sender.send({"event": "schedule.failed", "app": "sales", "run_id": 3})
        receiver.wait_posts(1)
    finally:
        sender.stop()
    headers, body = receiver.posts[0]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    assert headers["X-Nbapps-Event"] == "schedule.failed"
    assert headers["X-Nbapps-Delivery"] == delivery
    payload = json.loads(body)
    assert (payload["app"], payload["run_id"], payload["delivery"]) == ("sales", 3, delivery)
    assert payload["sent_at"].endswith("+00:00")
    # another secret does not verify: the header is worth checking
    forged = "sha256=" + hmac.new(b"guess", body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(headers[SIGNATURE_HEADER], forged)


def test_without_a_secret_nothing_is_signed(receiver):
    sender = WebhookSender(receiver.url)
    try:
        sender.send({"event": "schedule.recovered"})
        receiver.wait_posts(1)
    finally:
        sender.stop()
    assert SIGNATURE_HEADER not in receiver.posts[0][0]


def test_a_failed_post_is_retried_with_the_same_delivery_id(receiver):
    receiver.fail_first = 2
    sender = WebhookSender(receiver.url, secret=SECRET, attempts=4, first_retry=0.05)
    try:
        delivery = sender.send({"event": "schedule.failed"})
        receiver.wait_posts(3)
        wait_until(lambda: sender.delivered == 1, "the third attempt delivered")
    finally:
        sender.stop()
    assert [h["X-Nbapps-Delivery"] for h, _ in receiver.posts] == [delivery] * 3
    assert len({b for _, b in receiver.posts}) == 1  # the same signed bytes each time
    assert (sender.failed_attempts, sender.delivered, sender.given_up) == (2, 1, 0)


def test_a_notification_is_given_up_after_its_attempts(receiver):
    receiver.fail_first = 10
    sender = WebhookSender(receiver.url, attempts=2, first_retry=0.05)
    try:
        sender.send({"event": "schedule.failed"})
        wait_until(lambda: sender.given_up == 1, "the notification given up")
    finally:
        sender.stop()
    assert len(receiver.posts) == 2 and sender.delivered == 0 and sender.pending() == 0


def test_a_slow_receiver_does_not_hold_up_the_caller(receiver):
    receiver.release.clear()
    sender = WebhookSender(receiver.url, timeout=60)
    try:
        sender.send({"event": "schedule.failed"})
        assert receiver.started.wait(30)  # the POST is in progress...
        second = sender.send({"event": "schedule.recovered"})  # ...and send() returned anyway
        assert not receiver.release.is_set() and second
        receiver.release.set()
        receiver.wait_posts(2)
    finally:
        sender.stop()
    assert [h["X-Nbapps-Event"] for h, _ in receiver.posts] == ["schedule.failed",
                                                                  "schedule.recovered"]


def test_stop_ends_the_thread_and_drops_what_is_pending(receiver, caplog):
    receiver.fail_first = 10
    sender = WebhookSender(receiver.url, attempts=5, first_retry=60)
    sender.send({"event": "schedule.failed"})
    receiver.wait_posts(1)  # failed once; the retry waits 60 s
    wait_until(lambda: sender.pending() == 1, "the notification requeued")
    with caplog.at_level("WARNING", logger="nbapps.schedules"):
        sender.stop(timeout=10)
    assert sender._thread is not None and not sender._thread.is_alive()  # noqa: SLF001
    assert "not delivered (gallery stopping): 1" in caplog.text
    assert "t0ken" not in caplog.text  # the URL's query (a token) is never logged
