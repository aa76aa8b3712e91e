"""Webhook notifications of the scheduler, delivered off its tick, signed, retried.

The scheduler only *queues* a notification (:meth:`WebhookSender.send`); a thread of its own
POSTs it, so a slow or unreachable receiver never holds up the firing of schedules (a POST could
take the whole ``timeout``, once per notification, on the tick). A failed POST (transport error
or a non-2xx answer) is tried again after 5, 15 and 45 s (``attempts`` in all); then it is given
up with a warning. Deliveries are kept in this process's memory only: a notification pending
when the gallery stops is logged as not delivered (the app's *broken* state, which the
notification reports, is in the catalog and on its page anyway).

What a receiver gets (see the README, "Runs and schedules")::

    POST <schedule_webhook_url>
    Content-Type: application/json
    User-Agent: nbapps-scheduler
    X-Nbapps-Event: schedule.failed | schedule.recovered
    X-Nbapps-Delivery: <32 hex digits, the same for every attempt of one notification>
    X-Nbapps-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the shared secret>

The signature header is sent when ``schedule_webhook_secret`` is set; a receiver recomputes
the HMAC over the bytes it received and compares in constant time (the body holds ``sent_at``,
so a receiver may also refuse old replays).
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("nbapps.schedules")

SIGNATURE_HEADER = "X-Nbapps-Signature-256"
#: seconds before the second attempt; each further wait is three times the previous one
FIRST_RETRY = 5.0
#: notifications waiting to be delivered; beyond it the oldest is dropped (and logged)
MAX_PENDING = 1000

#: ``post(url, body, headers, timeout)``: raises for a transport error or a non-2xx answer
Post = Callable[[str, bytes, dict[str, str], float], None]


def signature(secret: str, body: bytes) -> str:
    """The value of :data:`SIGNATURE_HEADER` for ``body``."""
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def post_bytes(url: str, body: bytes, headers: dict[str, str], timeout: float) -> None:
    import httpx

    response = httpx.post(url, content=body, headers=headers, timeout=timeout,
                          follow_redirects=False)
    response.raise_for_status()


def safe_url(url: str) -> str:
    """The URL without its query and credentials (often a secret token), for logs."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


@dataclass(order=True)
class _Delivery:
    due: float
    seq: int
    event: str = field(compare=False)
    delivery_id: str = field(compare=False)
    body: bytes = field(compare=False)
    attempts: int = field(default=0, compare=False)


class WebhookSender:
    """Queues notifications and POSTs them from one daemon thread (started on the first one)."""

    def __init__(self, url: str, timeout: float = 5.0, *, secret: str = "", attempts: int = 4,
                 first_retry: float = FIRST_RETRY, post: Post | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.secret = secret
        self.attempts = max(1, attempts)
        self.first_retry = first_retry
        self._post = post or post_bytes
        self._heap: list[_Delivery] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: notifications accepted by the receiver, POSTs that failed, notifications given up
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0

    def send(self, body: dict[str, Any]) -> str:
        """Queue ``body`` (a JSON object with an ``event``); returns its delivery id."""
        delivery_id = secrets.token_hex(16)
        payload = {**body, "delivery": delivery_id,
                   "sent_at": datetime.now(timezone.utc).isoformat()}
        data = json.dumps(payload, default=str).encode("utf-8")
        item = _Delivery(time.monotonic(), next(self._seq), str(body.get("event", "")),
                         delivery_id, data)
        with self._cond:
            if self._stopping:
                log.warning("webhook %s: gallery stopping, %s not sent", safe_url(self.url),
                            item.event)
                return delivery_id
            if len(self._heap) >= MAX_PENDING:
                dropped = min(self._heap, key=lambda d: d.seq)
                self._heap.remove(dropped)
                heapq.heapify(self._heap)
                log.warning("webhook %s: pending notifications at their bound (%d); dropped "
                            "%s %s", safe_url(self.url), MAX_PENDING, dropped.event,
                            dropped.delivery_id)
            heapq.heappush(self._heap, item)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nbapps-webhook",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return delivery_id

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (after the POST in progress, if any); pending ones are logged."""
        with self._cond:
            self._stopping = True
            left = len(self._heap)
            self._heap.clear()
            self._cond.notify_all()
            thread = self._thread
        if left:
            log.warning("webhook %s: notifications not delivered (gallery stopping): %d",
                        safe_url(self.url), left)
        if thread is not None:
            thread.join(timeout)

    # -- the thread ----------------------------------------------------------------------------

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _loop(self) -> None:
        while (item := self._next()) is not None:
            self._attempt(item)

    def _headers(self, item: _Delivery) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "nbapps-scheduler",
                   "X-Nbapps-Event": item.event, "X-Nbapps-Delivery": item.delivery_id}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, item.body)
        return headers

    def _attempt(self, item: _Delivery) -> None:
        item.attempts += 1
        try:
            self._post(self.url, item.body, self._headers(item), self.timeout)
        except Exception as exc:  # noqa: BLE001 - any failure of the receiver is retried
            self.failed_attempts += 1
            if item.attempts >= self.attempts:
                self.given_up += 1
                log.warning("webhook %s: %s %s given up after %d attempts: %s",
                            safe_url(self.url), item.event, item.delivery_id, item.attempts,
                            exc)
                return
            wait = self.first_retry * 3 ** (item.attempts - 1)
            log.info("webhook %s: %s failed (%s); attempt %d in %.0f s", safe_url(self.url),
                     item.event, exc, item.attempts + 1, wait)
            with self._cond:
                if not self._stopping:
                    item.due = time.monotonic() + wait
                    heapq.heappush(self._heap, item)
            return
        self.delivered += 1


__all__ = ["SIGNATURE_HEADER", "WebhookSender", "post_bytes", "safe_url", "signature"]
