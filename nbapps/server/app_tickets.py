"""App tickets: the credential an isolated app page uses for its own requests (DESIGN.md, 8).

App pages are served with a CSP ``sandbox`` that leaves out ``allow-same-origin``, so in the
viewer's browser the app runs in an *opaque* origin: it cannot read any cookie or storage of the
gallery, and its requests to the gallery's host are cross-site, so the browser attaches no
cookie to them (measured in Chromium: neither ``SameSite=Lax``, ``Strict`` nor unset cookies are
sent, and every request says ``Sec-Fetch-Site: cross-site``). What the app may do instead is
carried by a ticket in its URL path::

    <base>apps/<slug>/~t/<ticket>/...        the proxy checks and strips ``~t/<ticket>/``

A ticket is signed by the gallery (HMAC-SHA256 with a key derived from the cookie secret) and
names one app, one viewer (name and account id; none for anonymous apps) and an expiry
(``NbappsServer.app_ticket_lifetime``). The gallery checks on every request that the viewer's
account still exists, is enabled and may open apps. A ticket grants nothing but that app's page,
assets, kernel and widget connection as that viewer: what the app's own code could do anyway. It
is not a gallery credential: the gallery's pages and API never accept it. It is not tied to the
login session (the sandboxed page sends no cookie to check it against): after a logout, a page
already open keeps its app until the ticket expires.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

#: the path segment that introduces a ticket: ``<base>apps/<slug>/~t/<ticket>/``
SEGMENT = "~t"
#: the app frame's progress poll under a page's ticket path,
#: ``<base>apps/<slug>/~t/<ticket>/~status`` (answered by the proxy; no runner path has a ``~``)
STATUS_PATH = "~status"
#: what a ticket looks like in a path (URL-safe base64 parts joined by dots)
TICKET_RE = r"[A-Za-z0-9_-]{8,400}\.[A-Za-z0-9_-]{16,64}"
_TICKET = re.compile(TICKET_RE)
_REDACT = re.compile(rf"/{re.escape(SEGMENT)}/[^/?#]+")
_VERSION = 1
_MAC_BYTES = 18


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def redact(path: str) -> str:
    """``path`` with any ticket replaced by ``…`` (for logs)."""
    return _REDACT.sub(f"/{SEGMENT}/…", path)


@dataclass(frozen=True)
class Ticket:
    """What a valid ticket says."""

    slug: str
    #: the viewer's user name; "" for an anonymous viewer
    user: str
    #: the viewer's account id (0 for anonymous): a new account of the same name is not them
    uid: int
    #: expiry, seconds since the epoch
    expires: int


class AppTickets:
    """Issues and checks app tickets (one instance per gallery; replicas share the secret)."""

    def __init__(self, key: bytes | None = None, *, lifetime: float = 2 * 3600) -> None:
        self._key = key or secrets.token_bytes(32)
        self.lifetime = lifetime
        #: seconds: tickets issued within one such window are the same (see :meth:`issue`)
        self.granularity = max(1, min(900, int(lifetime // 4) or 1))

    @classmethod
    def from_secret(cls, secret: bytes, *, lifetime: float = 2 * 3600) -> AppTickets:
        """Tickets keyed from the gallery's cookie secret (a separate key: a ticket can never
        be mistaken for a signed cookie, nor the other way round)."""
        key = hmac.new(secret, b"nbapps app tickets v1", hashlib.sha256).digest()
        return cls(key, lifetime=lifetime)

    def _mac(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES])

    def issue(self, slug: str, user: str = "", uid: int = 0, *,
              now: float | None = None) -> str:
        """A ticket for ``slug`` and the viewer ``user`` (account ``uid``; "" for anonymous).

        The expiry is rounded up to a multiple of :attr:`granularity`: every page of one
        viewer and app opened within that window gets the same ticket, hence the same asset
        URLs, and the browser's cache serves them again (a new ticket per page would make every
        page load fetch all of Voilà's ~100 scripts and styles anew)."""
        t = time.time() if now is None else now
        step = self.granularity
        expires = int((t + self.lifetime + step - 1) // step * step)
        body = json.dumps([_VERSION, slug, user, int(uid) if user else 0, expires],
                          separators=(",", ":")).encode()
        payload = _b64(body)
        return f"{payload}.{self._mac(payload.encode())}"

    def verify(self, token: str, slug: str, *, now: float | None = None) -> Ticket | None:
        """The ticket's content if it is genuine, for ``slug`` and not expired; else None."""
        if not _TICKET.fullmatch(token or ""):
            return None
        payload, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            version, t_slug, user, uid, expires = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if (version != _VERSION or t_slug != slug or not isinstance(expires, int)
                or not isinstance(uid, int)):
            return None
        if expires < (time.time() if now is None else now):
            return None
        return Ticket(slug=str(t_slug), user=str(user), uid=uid, expires=expires)
