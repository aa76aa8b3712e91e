"""JupyterHub as the gallery's identity provider (``c.NbappsServer.auth = "jupyterhub"``).

The gallery runs as a Hub service and logs people in with the Hub's OAuth, the flow of
jupyterhub's ``HubOAuth``: the login page sends the browser to the Hub's
``/hub/api/oauth2/authorize`` with a random ``state`` (and a PKCE challenge); the Hub sends it
back to ``<base_url>oauth_callback`` with a code; the gallery checks the state against its
signed state cookie, trades the code for a token (``/hub/api/oauth2/token``, authenticated by
the service's API token), asks ``/hub/api/user`` who that is, creates or updates the gallery
user (role from ``HubConfiguration.role_map``, :mod:`.hub_config`, re-applied at every login)
and opens an ordinary gallery session. Everything downstream (roles, app tickets, XSRF,
audit) is unchanged.

Such a session is **bound to the Hub's OAuth token**: the signed session cookie holds the
catalog session id and the token sealed with a key derived from the cookie secret (Fernet:
encrypted and authenticated; the catalog keeps nothing of it), and whenever this process
would trust the session more than ``recheck_seconds`` after the Hub last accepted the token,
it asks the Hub again (``GET /hub/api/user`` with that token). JupyterHub's logout deletes
the OAuth tokens issued during the Hub login session it ends (as do token revocation,
expiry and deleting the user), so the Hub answers 403 and the gallery session is ended in
the catalog: the next request is logged out. A changed group or role re-maps the gallery
role. While the Hub cannot be reached, a session is kept ``recheck_grace_seconds`` after its
last successful check on this process, then refused (not ended) until the Hub answers.
Password logins and API tokens are not affected. App pages send no cookie (their requests carry
a ticket bound to the session), so each process also re-checks, in the background
(:meth:`HubUsers.recheck_watched`), the sessions whose cookie it saw within a ticket's lifetime.

Unlike ``HubOAuth``, the OAuth state lives in the signed state cookie, not in the process's
memory, so the callback may reach any gallery replica (they share the cookie secret).

A JupyterHub API token of a user (``Authorization: token <hub token>``, e.g. the
``$JUPYTERHUB_API_TOKEN`` of a single-user server) is accepted by the API too: the Hub is asked
who owns it (cached ``cache_seconds``, like ``HubAuth``) and it must carry one of
``access_scopes``. Gallery API tokens (``nba_...``) keep working in both modes.

Calls to the Hub are synchronous (``urllib``) and made on the server's worker threads.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlencode

from cryptography.fernet import Fernet, InvalidToken

from .. import accounts
from ..accounts import Role
from ..errors import AuthRequired, NbappsError, PermissionDenied, UsageError
from .authz import PUBLIC, Requirement
from .base import PageHandler, coded_error
from .hub_config import HubSettings, HubUser, has_access, role_for
from .identity import SESSION_COOKIE, CatalogUsers, Session, WebUser

log = logging.getLogger("nbapps.server.hub_auth")

#: signed cookies holding a pending login's state, PKCE verifier and destination, one per
#: login started (named after the state, so two tabs logging in at once do not collide)
STATE_COOKIE = "nbapps-hub-oauth"
STATE_SECONDS = 600
#: the actor of catalog changes the Hub's answers cause (':' cannot be in a user name)
HUB_ACTOR = "jupyterhub:login"
#: after the Hub could not be reached, calls to it fail at once for this long, so a Hub that
#: is down does not hold a worker thread for ``timeout`` seconds per request
UNREACHABLE_BACKOFF_S = 2.0
#: a session re-check waiting on the Hub longer than this makes other re-checks count the Hub
#: as down (grace rule) instead of waiting too: a hung Hub must not take every worker thread
STALLED_CALL_S = 1.0
#: Hub sessions whose last check this process remembers (beyond: the stale ones are dropped)
MAX_TRACKED_SESSIONS = 20_000
#: what the Fernet key of sealed Hub tokens is derived from (with the cookie secret)
_SEAL_LABEL = b"nbapps: the Hub token of a gallery session, v1"


class HubClient:
    """The calls the gallery makes to the Hub's REST API (synchronous; run them on threads)."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = settings
        self._cache: dict[bytes, tuple[float, HubUser | None]] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0

    def _request(self, path: str, *, token: str, data: bytes | None = None
                 ) -> tuple[int, Any]:
        """(status, decoded JSON or None); NBA344 when the Hub cannot be reached or fails
        (for ``UNREACHABLE_BACKOFF_S`` after a failed connection, without trying)."""
        url = f"{self.settings.api_url}/{path}"
        if time.monotonic() < self._down_until:
            raise coded_error("JupyterHub did not answer; try again in a moment", "NBA344", 503)
        headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=data, headers=headers,
                                     method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=self.settings.timeout) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except OSError as exc:  # URLError, timeouts, refused connections
            self._down_until = time.monotonic() + UNREACHABLE_BACKOFF_S
            reason = getattr(exc, "reason", exc)
            log.warning("JupyterHub API %s unreachable: %s", url, reason)
            raise coded_error("JupyterHub did not answer; try again in a moment", "NBA344",
                              503) from None
        if status >= 500:
            log.warning("JupyterHub API %s answered %d", url, status)
            raise coded_error(f"JupyterHub failed (HTTP {status}); try again in a moment",
                              "NBA344", 502)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        return status, payload

    def token_for_code(self, code: str, verifier: str) -> str:
        """The OAuth token for an authorization code (NBA345 if the Hub refuses it)."""
        s = self.settings
        form = urlencode({"client_id": s.client_id, "client_secret": s.api_token,
                          "grant_type": "authorization_code", "code": code,
                          "redirect_uri": s.callback_url, "code_verifier": verifier})
        status, payload = self._request("oauth2/token", token=s.api_token, data=form.encode())
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if status != 200 or not isinstance(token, str) or not token:
            detail = payload.get("error_description") or payload.get("error") \
                if isinstance(payload, dict) else None
            log.warning("JupyterHub refused the OAuth code: HTTP %d %s", status, detail or "")
            raise coded_error("JupyterHub refused the login; log in again", "NBA345", 403)
        return token

    def user_for_token(self, token: str, *, use_cache: bool = True) -> HubUser | None:
        """Who owns ``token`` (None: nobody, e.g. revoked), cached ``cache_seconds``."""
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        if use_cache:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        status, payload = self._request("user", token=token)
        user = HubUser.from_model(payload) \
            if status == 200 and isinstance(payload, dict) and payload.get("name") else None
        if user is not None and user.roles is None and any(
                k.startswith("role:") for k in self.settings.role_map):
            user = self._with_roles(user)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = (now + self.settings.cache_seconds, user)
        return user

    def _with_roles(self, user: HubUser) -> HubUser:
        """``user`` with its Hub roles, read with the service's token (needs the
        ``read:roles:users`` scope); without them ``role:`` keys match nothing."""
        status, payload = self._request(f"users/{urllib.request.quote(user.name, safe='')}",
                                        token=self.settings.api_token)
        roles = payload.get("roles") if status == 200 and isinstance(payload, dict) else None
        if roles is None:
            log.warning("cannot read the Hub roles of %s (HTTP %d): give the gallery service "
                        "the read:roles:users scope", user.name, status)
            return user
        return HubUser(name=user.name, admin=user.admin, groups=user.groups,
                       roles=frozenset(str(r) for r in roles), scopes=user.scopes)


@dataclass
class _Check:
    """What this process knows of one Hub-bound session (monotonic times)."""

    last_ok: float | None  # the Hub last accepted its token (None: not since this start)
    next_check: float  # no call to the Hub about it before this
    warned: str = ""  # "kept" / "refused": what was logged about it while the Hub is down
    session: Session | None = None  # the cookie's session (with the sealed token)
    seen: float = 0.0  # a request of this process last carried its cookie


class HubUsers(CatalogUsers):
    """Gallery users whose identity comes from the Hub (plus the built-in ones: local accounts
    with a password, and gallery API tokens, keep working).

    ``cookie_secret`` (the server's) keys the sealing of Hub tokens in session cookies."""

    def __init__(self, catalog: Any, settings: HubSettings,
                 client: HubClient | None = None, *, cookie_secret: bytes) -> None:
        super().__init__(catalog)
        self.settings = settings
        self.client = client or HubClient(settings)
        key = hmac.digest(cookie_secret, _SEAL_LABEL, "sha256")
        self._sealer = Fernet(base64.urlsafe_b64encode(key))
        self._checks: dict[bytes, _Check] = {}
        self._asking: dict[int, float] = {}  # re-checks waiting on the Hub: start times
        self._lock = threading.Lock()

    # -- sessions bound to a Hub token ---------------------------------------------------------
    @property
    def session_cache_seconds(self) -> float:
        """The identity cache keeps a session's answer at most this long (see
        :class:`~.identity.IdentityProvider`), so a re-check is not delayed by it."""
        return max(self.settings.recheck_seconds, 1.0)

    def session_cookie_value(self, session_id: str, token: str) -> str:
        """The session cookie's value after a Hub login: the catalog session id bound to the
        sealed Hub ``token`` (the cookie's signature covers both). The token was just checked."""
        sealed = self._sealer.encrypt(token.encode("utf-8")).decode("ascii")
        now = time.monotonic()
        session = Session(id=session_id, hub=sealed)
        self._remember(session.key, _Check(
            last_ok=now, next_check=now + self.settings.recheck_seconds, session=session,
            seen=now))
        return f"{session_id}.{sealed}"

    def unseal(self, sealed: str) -> str | None:
        """The Hub token of a sealed cookie part (None: not sealed with this secret)."""
        try:
            return self._sealer.decrypt(sealed.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            return None  # sealed under another cookie secret (the signature would fail too)

    def _remember(self, key: bytes, check: _Check) -> None:
        with self._lock:
            if len(self._checks) >= MAX_TRACKED_SESSIONS:
                now = time.monotonic()
                self._checks = {k: c for k, c in self._checks.items() if c.next_check > now}
                if len(self._checks) >= MAX_TRACKED_SESSIONS:
                    self._checks.clear()
            self._checks[key] = check

    def _forget(self, key: bytes) -> None:
        with self._lock:
            self._checks.pop(key, None)

    def user_by_session(self, session: Session) -> WebUser | None:
        """The catalog's answer; for a Hub-bound session also the Hub's about its token when
        the last one is older than ``recheck_seconds`` (runs on a worker thread)."""
        return self._check_session(session, seen=True)

    def recheck_watched(self, window: float) -> int:
        """Ask the Hub now about the sessions whose re-check is due among those whose cookie
        this process saw in the last ``window`` seconds; forget the older ones. Returns how many
        were asked about.

        Why: a viewer who only uses an app after a Hub logout sends no cookie (its requests
        carry a ticket bound to the session), so the re-check of :meth:`user_by_session` would
        never come. The frame that issued the ticket was a cookie request of this process, so
        with ``window`` the tickets' lifetime every ticket bound to a Hub session is covered by
        the process that issued it, whichever replica serves the app."""
        now = time.monotonic()
        with self._lock:
            for key in [k for k, c in self._checks.items() if now - c.seen > window]:
                del self._checks[key]
            due = [c.session for c in self._checks.values()
                   if c.session is not None and now >= c.next_check]
        for session in due:
            try:
                self._check_session(session, seen=False)
            except NbappsError as err:  # the catalog is away: the next round asks again
                log.debug("Hub session re-check postponed: %s", err.message)
        return len(due)

    def _check_session(self, session: Session, *, seen: bool) -> WebUser | None:
        """:meth:`user_by_session`; ``seen``: a request carries the session's cookie (else the
        background re-check, which must not keep the session watched by itself)."""
        user = super().user_by_session(session)
        if session.hub is None:  # a password login: the catalog alone decides
            return user
        key = session.key
        if user is None:
            self._forget(key)
            return None
        now = time.monotonic()
        with self._lock:
            check = self._checks.get(key)
            if check is not None and seen:
                check.seen, check.session = now, session
        last_seen = now if seen else (check.seen if check is not None else 0.0)
        if check is not None and now < check.next_check:
            return user
        token = self.unseal(session.hub)
        if token is None:
            return None
        try:
            hub_user = self._ask_hub(token)
        except NbappsError as err:
            if err.code != "NBA344":
                raise
            # the grace as of the request
            return self._hub_down(session, check, user, now, last_seen)
        if hub_user is None:
            self._end(session, user, "JupyterHub no longer accepts its token (a Hub logout, "
                                     "or the token was revoked or expired)")
            return None
        if hub_user.name != user.name:
            self._end(session, user, f"its Hub token now belongs to {hub_user.name!r}")
            return None
        try:
            synced = self.sync_user(hub_user, via="cookie")
        except PermissionDenied as err:  # NBA346/NBA348: no longer allowed in
            self._end(session, user, err.message)
            return None
        if check is not None and check.warned:  # logged as kept or refused before
            log.info("JupyterHub answers again; the session of %s is confirmed", user.name)
        self._remember(key, _Check(last_ok=now, next_check=now + self.settings.recheck_seconds,
                                   session=session, seen=last_seen))
        return synced

    def _ask_hub(self, token: str) -> HubUser | None:
        """The Hub's answer about a session's token; NBA344 also, without asking, while another
        re-check has waited on the Hub for more than ``STALLED_CALL_S``."""
        now = time.monotonic()
        marker = object()
        with self._lock:
            if any(now - started > STALLED_CALL_S for started in self._asking.values()):
                raise coded_error("JupyterHub is slow to answer", "NBA344", 503)
            self._asking[id(marker)] = now
        try:
            return self.client.user_for_token(token, use_cache=False)
        finally:
            with self._lock:
                self._asking.pop(id(marker), None)

    def _hub_down(self, session: Session, check: _Check | None, user: WebUser,
                  now: float, seen: float) -> WebUser | None:
        """The Hub could not be asked: keep the session within the grace period after its last
        successful check on this process, else refuse it (without ending it)."""
        grace = self.settings.recheck_grace_seconds
        last_ok = check.last_ok if check is not None else None
        warned = check.warned if check is not None else ""
        if last_ok is not None and now - last_ok < grace:
            if warned != "kept":
                log.warning("JupyterHub cannot be reached: the session of %s is kept for up "
                            "to %.0f s more (HubConfiguration.recheck_grace_seconds)",
                            user.name, last_ok + grace - now, extra={"user": user.name})
            self._remember(session.key, _Check(
                last_ok=last_ok, warned="kept", session=session, seen=seen,
                next_check=min(now + self.settings.recheck_seconds, last_ok + grace)))
            return user
        if warned != "refused":
            log.warning("JupyterHub cannot be reached: the session of %s is refused until it "
                        "answers (%s)", user.name,
                        "not checked since this gallery started" if last_ok is None
                        else f"last checked {now - last_ok:.0f} s ago", extra={"user": user.name})
        self._remember(session.key, _Check(last_ok=last_ok, next_check=now, warned="refused",
                                           session=session, seen=seen))
        return None

    def _end(self, session: Session, user: WebUser, why: str) -> None:
        """End a Hub-bound session in the catalog (audited as the user's ``logout``)."""
        log.info("gallery session of %s ended: %s", user.name, why, extra={"user": user.name})
        self._forget(session.key)
        self.catalog.end_session(session.id, actor=user.name)

    def sync_user(self, hub_user: HubUser, *, via: str, ip: str | None = None) -> WebUser:
        """The gallery user of ``hub_user``: created (without a password) on first sight, its
        role set from the role map whenever it differs. NBA346/NBA348 when refused."""
        if not has_access(hub_user.scopes, self.settings.access_scopes):
            raise PermissionDenied(
                f"JupyterHub user {hub_user.name!r} has no access to this gallery",
                code="NBA346")
        try:
            accounts.check_user_name(hub_user.name)
        except UsageError:
            raise PermissionDenied(f"JupyterHub user name {hub_user.name!r} cannot be a "
                                   "gallery user name", code="NBA348") from None
        role = role_for(hub_user, self.settings.role_map, self.settings.default_role)
        cat = self.catalog
        info = cat.find_user(hub_user.name)
        if info is None:
            try:
                info = cat.create_user(hub_user.name, role, None, actor=HUB_ACTOR)
                log.info("created gallery user %s (%s) from JupyterHub", hub_user.name,
                         role.value, extra={"user": hub_user.name, "role": role.value})
            except NbappsError as err:
                if err.code != "NBA307":  # NBA307: created meanwhile by another request
                    raise
                info = cat.get_user(hub_user.name)
        if info.disabled:
            raise PermissionDenied(f"the gallery account {hub_user.name!r} is disabled",
                                   code="NBA348")
        if Role(info.role) != role:
            log.info("gallery role of %s: %s -> %s (JupyterHub)", hub_user.name,
                     Role(info.role).value, role.value)
            info = cat.set_role(hub_user.name, role, actor=HUB_ACTOR)
        return WebUser(id=info.id, name=info.name, role=role.value, via=via)

    def user_by_token(self, token: str) -> WebUser | None:
        if accounts.looks_like_token(token):
            return super().user_by_token(token)
        hub_user = self.client.user_for_token(token)
        if hub_user is None:
            return None
        return self.sync_user(hub_user, via="token")

    def login(self, name: str, password: str, ip: str | None) -> WebUser:
        try:
            return super().login(name, password, ip)
        except AuthRequired as err:
            if err.code == "NBA308" and self.catalog.has_password(name) is False:
                raise AuthRequired(f"{name} signs in through JupyterHub, not with a password",
                                   code="NBA347") from None
            raise


def hub_users(ctx: Any) -> HubUsers | None:
    """The Hub user source of a server context (None: built-in accounts only)."""
    users = getattr(ctx.identity, "users", None)
    return users if isinstance(users, HubUsers) else None


# -- the OAuth pages ---------------------------------------------------------------------------

def state_cookie(state: str) -> str:
    """The name of the cookie of the login whose OAuth state is ``state``."""
    return f"{STATE_COOKIE}-{hashlib.sha256(state.encode()).hexdigest()[:16]}"


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


class HubLoginHandler(PageHandler):
    """``GET <base>hub-login?next=...``: off to the Hub's OAuth authorization."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC}
    nav = "login"

    def get(self) -> None:
        from .pages_auth import safe_next

        users = hub_users(self.ctx)
        if users is None:
            raise coded_error("JupyterHub login is not enabled on this gallery", "NBA349", 404)
        nxt = safe_next(self.get_argument("next", ""), self.ctx.options.base_url)
        state = secrets.token_urlsafe(24)
        verifier, challenge = _pkce()
        self.set_signed_cookie(
            state_cookie(state), json.dumps({"s": state, "n": nxt, "v": verifier}),
            expires_days=STATE_SECONDS / 86400, httponly=True, samesite="Lax",
            secure=self.request.protocol == "https", path=self.ctx.options.base_url)
        s = users.settings
        self.redirect(s.authorize_url + "?" + urlencode({
            "client_id": s.client_id, "redirect_uri": s.callback_url,
            "response_type": "code", "state": state,
            "code_challenge": challenge, "code_challenge_method": "S256"}))


class HubCallbackHandler(PageHandler):
    """``GET <base>oauth_callback?code=...&state=...``: the Hub's answer; opens a session."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC}
    nav = "login"

    def _pending(self) -> dict[str, str]:
        state = self.get_argument("state", "")
        name = state_cookie(state)
        raw = self.get_signed_cookie(name, max_age_days=STATE_SECONDS / 86400) \
            if state else None
        self.clear_cookie(name, path=self.ctx.options.base_url)  # a state is used once
        try:
            pending = json.loads(raw) if raw else None
        except ValueError:
            pending = None
        if (not isinstance(pending, dict) or not isinstance(pending.get("s"), str)
                or not state or not hmac.compare_digest(pending["s"], state)):
            raise coded_error("the JupyterHub login state is missing, expired or does not "
                              "match; start the login again", "NBA343", 400)
        return pending

    async def get(self) -> None:
        users = hub_users(self.ctx)
        if users is None:
            raise coded_error("JupyterHub login is not enabled on this gallery", "NBA349", 404)
        pending = self._pending()
        if self.get_argument("error", ""):
            log.info("JupyterHub login refused: %s", self.get_argument("error"))
            raise coded_error("JupyterHub refused the login", "NBA345", 403)
        code = self.get_argument("code", "")
        if not code:
            raise coded_error("the JupyterHub answer has no code; start the login again",
                              "NBA343", 400)
        token = await self.ctx.run(users.client.token_for_code, code, pending.get("v", ""))
        hub_user = await self.ctx.run(users.client.user_for_token, token, use_cache=False)
        if hub_user is None:
            raise coded_error("JupyterHub does not know the token it just gave", "NBA345", 403)
        user = await self.ctx.run(users.sync_user, hub_user, via="cookie")
        await self.ctx.run(self.ctx.catalog.audit, "login", actor=user.name, target=user.name,
                           ip=self.client_ip(), details={"via": "jupyterhub",
                                                         "role": user.role})
        session_id = await self.ctx.run(self.ctx.identity.start_session, user)
        self.set_signed_cookie(
            SESSION_COOKIE, users.session_cookie_value(session_id, token),
            expires_days=self.ctx.identity.session_days, httponly=True, samesite="Lax",
            secure=self.request.protocol == "https", path=self.ctx.options.base_url)
        from .pages_auth import safe_next

        self.redirect(safe_next(pending.get("n"), self.ctx.options.base_url))


def login_links(ctx: Any, next_url: str) -> dict[str, str] | None:
    """What the login page shows for the Hub (None: built-in accounts only)."""
    users = hub_users(ctx)
    if users is None:
        return None
    return {"login": ctx.options.url("/hub-login") + "?" + urlencode({"next": next_url}),
            "logout": users.settings.logout_url}
