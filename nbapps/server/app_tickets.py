"""App tickets: the credential an isolated app page uses for its own requests (DESIGN.md, 8).

App pages are served with a CSP ``sandbox`` that leaves out ``allow-same-origin``, so in the
viewer's browser the app runs in an *opaque* origin: it cannot read any cookie or storage of the
gallery, and its requests to the gallery's host are cross-site, so the browser attaches no
cookie to them (measured in Chromium: neither ``SameSite=Lax``, ``Strict`` nor unset cookies are
sent, and every request says ``Sec-Fetch-Site: cross-site``). What the app may do instead is
carried by a ticket in its URL path::

    <base>apps/<slug>/~t/<ticket>/...        the proxy checks and strips ``~t/<ticket>/``

A ticket is signed by the gallery (HMAC-SHA256 with a key derived from the cookie secret) and
names one app, one viewer (name and account id; none for anonymous apps), an expiry
(``NbappsServer.app_ticket_lifetime``) and, for a viewer signed in with a session cookie, the
**login session** it was issued in. The gallery checks on every request that the viewer's
account still exists, is enabled and may open apps, and that the session is still live (not
logged out, not ended by a new password, an admin or a JupyterHub logout, not expired): a
ticket whose session ended is refused like an expired one (NBA340), within the identity cache
period (a few seconds) on every replica and at once on the replica that ended it. The binding
is a keyed digest of the catalog's hash of the session id (:meth:`AppTickets.binding`): tickets
appear in URLs, logs and the browser's history, and the binding reveals nothing that opens a
session; it is checked against the bindings of the viewer's live sessions
(``Catalog.live_session_hashes``, cached). Tickets of anonymous viewers and of API-token users
are not bound (there is no session to end). A ticket grants nothing but that app's page,
assets, kernel and widget connection as that viewer: what the app's own code could do anyway.
It is not a gallery credential: the gallery's pages and API never accept it.
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
#: 2: with the session binding (tickets of version 1, unbound, are refused: a page open
#: across the upgrade shows the expired page once)
_VERSION = 2
_MAC_BYTES = 18
#: bytes of a session binding (a truncated HMAC: 128 bits)
_BINDING_BYTES = 16


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
    #: the login session it is bound to (:meth:`AppTickets.binding`); "" when unbound
    session: str = ""


class AppTickets:
    """Issues and checks app tickets (one instance per gallery; replicas share the secret)."""

    def __init__(self, key: bytes | None = None, *, lifetime: float = 2 * 3600) -> None:
        self._key = key or secrets.token_bytes(32)
        self._binding_memo: dict[frozenset[str], frozenset[str]] = {}
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

    def binding(self, session_hash: str) -> str:
        """What a ticket says of the login session whose catalog hash (``id_hash``, the
        SHA-256 of its id) is ``session_hash``: a keyed digest, so the ticket names the session
        without revealing anything that could open it or be matched against the catalog."""
        mac = hmac.new(self._key, b"session\0" + session_hash.encode("ascii"), hashlib.sha256)
        return _b64(mac.digest()[:_BINDING_BYTES])

    def is_bound_to(self, ticket: Ticket, session_hashes: frozenset[str]) -> bool:
        """Whether ``ticket`` is bound to one of the sessions whose catalog hashes are
        ``session_hashes`` (the viewer's live sessions); an unbound ticket is bound to none."""
        return bool(ticket.session) and ticket.session in self._bindings(session_hashes)

    def _bindings(self, session_hashes: frozenset[str]) -> frozenset[str]:
        """The bindings of ``session_hashes``, remembered for the last few sets (the identity
        cache hands out the same set for a few seconds: one HMAC per session, not per
        request)."""
        found = self._binding_memo.get(session_hashes)
        if found is None:
            found = frozenset(self.binding(h) for h in session_hashes)
            if len(self._binding_memo) >= 1024:
                self._binding_memo.clear()
            self._binding_memo[session_hashes] = found
        return found

    def issue(self, slug: str, user: str = "", uid: int = 0, *, session_hash: str = "",
              now: float | None = None) -> str:
        """A ticket for ``slug`` and the viewer ``user`` (account ``uid``; "" for anonymous),
        bound to the login session whose catalog hash is ``session_hash`` ("": unbound, for
        anonymous viewers and API tokens).

        The expiry is rounded up to a multiple of :attr:`granularity`: every page of one
        viewer, session and app opened within that window gets the same ticket, hence the same
        asset URLs, and the browser's cache serves them again (a new ticket per page would make
        every page load fetch all of Voilà's ~100 scripts and styles anew), and the load
        balancer, hashing on the ticket, the same replica."""
        t = time.time() if now is None else now
        step = self.granularity
        expires = int((t + self.lifetime + step - 1) // step * step)
        bound = self.binding(session_hash) if user and session_hash else ""
        body = json.dumps([_VERSION, slug, user, int(uid) if user else 0, expires, bound],
                          separators=(",", ":")).encode()
        payload = _b64(body)
        return f"{payload}.{self._mac(payload.encode())}"

    def verify(self, token: str, slug: str, *, now: float | None = None) -> Ticket | None:
        """The ticket's content if it is genuine, for ``slug`` and not expired; else None.
        (Whether its session is still live is the gallery's check: it needs the catalog.)"""
        if not _TICKET.fullmatch(token or ""):
            return None
        payload, _, mac = token.partition(".")
        if not hmac.compare_digest(mac, self._mac(payload.encode())):
            return None
        try:
            version, t_slug, user, uid, expires, bound = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if (version != _VERSION or t_slug != slug or not isinstance(expires, int)
                or not isinstance(uid, int) or not isinstance(bound, str)):
            return None
        if expires < (time.time() if now is None else now):
            return None
        return Ticket(slug=str(t_slug), user=str(user), uid=uid, expires=expires,
                      session=bound)
