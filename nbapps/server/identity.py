"""Who is making this request (the IdentityProvider half of the identity/permission split).

Two credentials are accepted:

* a **session cookie** set by the login page: tornado's signed cookie (HMAC, timestamped, expires
  after ``session_days``) holding the random id of a session kept in the catalog
  (:mod:`nbapps.catalog.sessions`). The session and its user are looked up again (cached a few
  seconds), so logout, a new password, a disabled account, an admin's "end sessions" or a role
  change take effect on this server at once and on other replicas within the cache period: a
  replayed cookie of an ended session is nobody. The signing secret is persisted in the data
  dir (``cookie_secret``, mode 0600) so sessions survive restarts; replicas share one given by
  configuration, ``$NBAPPS_COOKIE_SECRET`` or a file (:func:`resolve_cookie_secret`).
* an **API token** as ``Authorization: Bearer <token>`` (the CLI, the JupyterLab extension). A
  request that carries this header is authenticated by the token only, never by a cookie too: a
  wrong token is a 401 even with a valid cookie. That is what makes it safe to exempt such
  requests from XSRF checks (see :mod:`nbapps.server.base`). Under JupyterHub
  (``c.NbappsServer.auth = "jupyterhub"``) the user source is
  :class:`nbapps.server.hub_auth.HubUsers`: a token that is not a gallery token (``nba_...``)
  is a user's Hub token, checked with the Hub; sessions are opened by its OAuth callback and
  stay bound to the Hub's token (re-checked with the Hub every ``recheck_seconds``: a Hub
  logout ends them).

Lookups are cached for a few seconds (tornado serves every request on one thread; the gallery
must answer in about a millisecond); :meth:`IdentityProvider.invalidate` drops the cache when a
role, password, token or session changes through this server.

Logins go through :meth:`IdentityProvider.login`, i.e. the catalog's ``verify_login``, which
rate-limits failures per user name + address and per address (NBA309, HTTP 429) from the audit
log, so the limit holds across restarts and replicas.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..datadir import PRIVATE_FILE_MODE, ensure_private_dir, tighten
from ..errors import AuthRequired, NbappsError

log = logging.getLogger("nbapps.server.identity")

SESSION_COOKIE = "nbapps-session"
SECRET_FILENAME = "cookie_secret"
#: what a session cookie holds: a catalog session id (``secrets.token_urlsafe(32)``), and
#: after a Hub login ``.`` + the Hub's OAuth token sealed by :mod:`.hub_auth` (encrypted; the
#: signature of the whole value binds the two, so the Hub part cannot be dropped or swapped)
_SESSION_VALUE = re.compile(
    r"(?P<id>[A-Za-z0-9_-]{40,64})(?:\.(?P<hub>[A-Za-z0-9_=-]{40,2000}))?")


@dataclass(frozen=True)
class WebUser:
    """The authenticated user of a request (a value: safe to cache and share)."""

    id: int
    name: str
    role: str
    #: "cookie" or "token": how this request was authenticated
    via: str = "cookie"


@dataclass(frozen=True)
class Session:
    """What a valid (signed, not expired) session cookie says: the catalog session's id, and
    for a session opened by a Hub login the sealed Hub token it is bound to."""

    id: str = field(repr=False)
    hub: str | None = field(default=None, repr=False)

    @property
    def key(self) -> bytes:
        """Cache key (a digest: the id itself is not kept in the cache)."""
        return hashlib.sha256(self.id.encode()).digest()


class UserSource(Protocol):
    """What identity needs from the catalog (see :class:`CatalogUsers`)."""

    def user_by_name(self, name: str) -> WebUser | None: ...

    def user_by_token(self, token: str) -> WebUser | None: ...

    def user_by_session(self, session: Session) -> WebUser | None: ...

    def login(self, name: str, password: str, ip: str | None) -> WebUser: ...

    def open_session(self, user: WebUser, days: float) -> str: ...

    def end_session(self, session_id: str, user: WebUser, ip: str | None) -> None: ...

    def live_sessions(self, user_id: int) -> frozenset[str]: ...


class CatalogUsers:
    """:class:`UserSource` over :class:`nbapps.catalog.Catalog` (disabled users are nobody)."""

    def __init__(self, catalog: Any) -> None:
        self.catalog = catalog

    @staticmethod
    def _web(info: Any, via: str) -> WebUser | None:
        if info is None or info.disabled:
            return None
        role = info.role.value if hasattr(info.role, "value") else str(info.role)
        return WebUser(id=info.id, name=info.name, role=role, via=via)

    def user_by_name(self, name: str) -> WebUser | None:
        return self._web(self.catalog.find_user(name), "cookie")

    def user_by_token(self, token: str) -> WebUser | None:
        try:
            info = self.catalog.verify_token(token)
        except AuthRequired:
            return None
        return self._web(info, "token")

    def user_by_session(self, session: Session) -> WebUser | None:
        return self._web(self.catalog.session_user(session.id), "cookie")

    def login(self, name: str, password: str, ip: str | None) -> WebUser:
        user = self._web(self.catalog.verify_login(name, password, ip=ip), "cookie")
        if user is None:
            raise AuthRequired("wrong user name or password", code="NBA308")
        return user

    def open_session(self, user: WebUser, days: float) -> str:
        return str(self.catalog.create_session(user.id, days=days))

    def end_session(self, session_id: str, user: WebUser, ip: str | None) -> None:
        self.catalog.end_session(session_id, actor=user.name, ip=ip)

    def live_sessions(self, user_id: int) -> frozenset[str]:
        return frozenset(self.catalog.live_session_hashes(user_id))


ENV_COOKIE_SECRET = "NBAPPS_COOKIE_SECRET"
#: fewest bytes a configured secret must have (``openssl rand -hex 32`` gives 32)
MIN_SECRET_BYTES = 32


class CookieSecretError(NbappsError):
    code = "NBA314"
    http_status = 500
    exit_code = 1


def _decode_hex_secret(text: str, where: str) -> bytes:
    value = text.strip()
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        raise CookieSecretError(f"the cookie secret in {where} is not hexadecimal") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise CookieSecretError(f"the cookie secret in {where} has {len(secret)} bytes; "
                                f"at least {MIN_SECRET_BYTES} are needed")
    return secret


def resolve_cookie_secret(data_dir: Path, *, value: str = "", file: str = "",
                          env: Mapping[str, str] | None = None) -> tuple[bytes, str]:
    """The cookie-signing secret and where it came from, in JupyterHub's order: ``value``
    (``c.NbappsServer.cookie_secret``, hex), else ``$NBAPPS_COOKIE_SECRET`` (hex), else the
    file ``file`` (``c.NbappsServer.cookie_secret_file``: hex, private to its owner), else the
    data dir's own ``cookie_secret`` (created if missing; one per data dir, so replicas with
    their own data dirs need one of the others). Unusable values: NBA314.
    """
    if value:
        return _decode_hex_secret(value, "NbappsServer.cookie_secret"), "config"
    env_value = (os.environ if env is None else env).get(ENV_COOKIE_SECRET, "")
    if env_value:
        return _decode_hex_secret(env_value, f"${ENV_COOKIE_SECRET}"), f"${ENV_COOKIE_SECRET}"
    if file:
        path = Path(file).expanduser()
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise CookieSecretError(f"cannot read the cookie secret file {path}: "
                                    f"{exc.strerror or exc}") from None
        if mode & 0o077:
            raise CookieSecretError(f"the cookie secret file {path} can be read by other users "
                                    f"(mode {mode & 0o777:03o}); chmod 600 it")
        return _decode_hex_secret(text, str(path)), str(path)
    return load_or_create_secret(data_dir), str(Path(data_dir) / SECRET_FILENAME)


def load_or_create_secret(data_dir: Path) -> bytes:
    """The cookie-signing secret from ``data_dir/cookie_secret``, created (0600) if missing.

    Created with ``O_EXCL`` in a temp file then renamed, so two servers starting at once on one
    data dir end up with the same secret.
    """
    path = Path(data_dir) / SECRET_FILENAME
    try:
        data = path.read_bytes().strip()
        if len(data) >= 32:
            tighten(path, PRIVATE_FILE_MODE)  # logs a warning if others could read it
            return data
    except FileNotFoundError:
        pass
    if not path.parent.exists():
        ensure_private_dir(path.parent)
    secret = base64.b64encode(secrets.token_bytes(48))
    tmp = path.with_name(f".{SECRET_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process won the race: use theirs
    except FileExistsError:
        secret = path.read_bytes().strip()
    finally:
        tmp.unlink(missing_ok=True)
    return secret


class _TTLCache:
    """A tiny thread-safe TTL cache (entries expire after ``ttl`` seconds; ``None`` is cached)."""

    def __init__(self, ttl: float, maxsize: int = 4096) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._data: dict[object, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: object, load: Callable[[], object]) -> object:
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        with self._lock:
            if len(self._data) >= self.maxsize:
                self._data.clear()
            self._data[key] = (now + self.ttl, value)
        return value

    def peek(self, key: object) -> tuple[bool, object]:
        """(True, value) if ``key`` is cached and fresh, else (False, None); never loads."""
        with self._lock:
            hit = self._data.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def forget(self, key: object) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class RequestLike(Protocol):
    """The parts of a tornado handler identity uses (keeps this module testable on its own)."""

    def get_signed_cookie(self, name: str, value: str | None = None,
                          max_age_days: float = 31, min_version: int | None = None
                          ) -> bytes | None: ...


class IdentityProvider:
    """Finds the user of a request from its Bearer token or its session cookie."""

    def __init__(self, users: UserSource, *, session_days: float = 7.0,
                 cache_ttl: float = 5.0) -> None:
        self.users = users
        self.session_days = session_days
        # a source that re-checks sessions elsewhere (the Hub) may need them reloaded sooner
        session_ttl = min(cache_ttl, getattr(users, "session_cache_seconds", cache_ttl))
        self._by_session = _TTLCache(session_ttl)
        self._by_token = _TTLCache(cache_ttl)
        #: user id -> catalog hashes of their live sessions (app tickets bound to a session),
        #: and (user id, a session the first lacked) -> the same, loaded again
        self._live_sessions = _TTLCache(session_ttl)
        self._session_misses = _TTLCache(session_ttl)

    def invalidate(self) -> None:
        """Forget cached users (after a role, password, token or session change)."""
        self._by_session.clear()
        self._by_token.clear()
        self._live_sessions.clear()
        self._session_misses.clear()

    # -- credentials ---------------------------------------------------------------------------
    @staticmethod
    def bearer_token(authorization: str | None) -> str | None:
        """The token of an ``Authorization: Bearer <token>`` header ("" if malformed)."""
        if not authorization:
            return None
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return ""
        return value.strip()

    def user_from_token(self, token: str) -> WebUser | None:
        if not token:
            return None
        key = hashlib.sha256(token.encode()).digest()
        user = self._by_token.get(key, lambda: self.users.user_by_token(token))
        assert user is None or isinstance(user, WebUser)
        return user

    def session(self, handler: RequestLike) -> Session | None:
        """What the request's session cookie says, if it is valid (signature and age)."""
        raw = handler.get_signed_cookie(SESSION_COOKIE, max_age_days=self.session_days)
        if not raw:
            return None
        try:
            value = raw.decode("ascii")
        except UnicodeDecodeError:
            return None
        found = _SESSION_VALUE.fullmatch(value)
        if found is None:
            return None  # malformed, or a cookie of an older nbapps (name + password stamp)
        return Session(id=found["id"], hub=found["hub"])

    def user_from_cookie(self, handler: RequestLike) -> WebUser | None:
        session = self.session(handler)
        if session is None:
            return None
        user = self._by_session.get(session.key,
                                    lambda: self.users.user_by_session(session))
        assert user is None or isinstance(user, WebUser)
        return user

    def start_session(self, user: WebUser) -> str:
        """A new catalog session for ``user`` (after a login): the session cookie's value."""
        return self.users.open_session(user, self.session_days)

    def end_session(self, session: Session, user: WebUser, ip: str | None) -> None:
        """Logout: the catalog ends the session (audited) and this server forgets it at once;
        other replicas within their cache period."""
        try:
            self.users.end_session(session.id, user, ip)
        finally:
            self._by_session.forget(session.key)
            self._live_sessions.forget(user.id)
            self._session_misses.clear()

    @staticmethod
    def session_hash(session: Session) -> str:
        """What the catalog stores of ``session`` (hex SHA-256 of its id): app tickets are
        bound to it (:mod:`nbapps.server.app_tickets`)."""
        return hashlib.sha256(session.id.encode("ascii")).hexdigest()

    def live_sessions(self, user_id: int, *, missing: str = "") -> frozenset[str]:
        """The catalog hashes of ``user_id``'s live sessions, cached like sessions (one read
        per user per cache period; forgotten at once after a logout through this server).

        ``missing`` names a session (a ticket's binding) the cached answer lacked: it may have
        been opened since (a new login), so the answer is loaded again, once per cache period
        per such session (a ticket of an ended session costs no read per request)."""
        def load() -> frozenset[str]:
            return frozenset(self.users.live_sessions(user_id))

        if missing:
            found = self._session_misses.get((int(user_id), missing), load)
        else:
            found = self._live_sessions.get(int(user_id), load)
        assert isinstance(found, frozenset)
        return found

    def cached(self, *, token: str | None = None, session: Session | None = None
               ) -> tuple[bool, WebUser | None]:
        """The cached answer for a token or a session, without any database call:
        (True, user or None) when known, (False, None) when it must be loaded."""
        if token is not None:
            found, user = self._by_token.peek(hashlib.sha256(token.encode()).digest())
        elif session is not None:
            found, user = self._by_session.peek(session.key)
        else:
            return True, None
        return found, user  # type: ignore[return-value]

    def login(self, name: str, password: str, ip: str | None) -> WebUser:
        """Check a password (the catalog audits it and rate-limits failures: NBA308/NBA309)."""
        return self.users.login(name, password, ip)

