"""Users, passwords, logins (with failure rate limiting) and API tokens.

Failed logins are audited (``login.failed``) and counted from the audit log, so the limit holds
across restarts and replicas. Refusals because of the limit are not: the first refusal of a
window for a user name + address (or, when the per-address limit hit, for the address) writes one
``login.throttled`` event; later ones are only counted in memory and the count goes into the
next such event, so a password-guessing script cannot fill the audit log.
"""
from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import accounts
from ..accounts import Role, TooManyAttempts
from ..errors import AuthRequired, Conflict, NotFound, UsageError
from .audit import append_event
from .models import ApiToken, AuditEventRow, User, utcnow
from .sessions import SessionsMixin, end_user_sessions
from .values import TokenInfo, UserInfo

TOKEN_TOUCH_INTERVAL = timedelta(seconds=60)
#: user name + address keys whose unrecorded throttled logins are counted (then reset)
MAX_THROTTLE_KEYS = 10_000


def user_info(row: User) -> UserInfo:
    return UserInfo(id=row.id, name=row.name, role=Role(row.role), created_at=row.created_at,
                    disabled=row.disabled)


def token_info(row: ApiToken, user_name: str) -> TokenInfo:
    return TokenInfo(id=row.id, user=user_name, prefix=row.prefix, label=row.label,
                     created_at=row.created_at, last_used_at=row.last_used_at,
                     revoked_at=row.revoked_at)


def get_user_row(session: Session, name: str, *, for_update: bool = False) -> User:
    stmt = select(User).where(User.name == name)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return row


class UsersMixin(SessionsMixin):
    # -- users -------------------------------------------------------------------------------

    def create_user(
        self, name: str, role: Role | str, password: str | None, *, actor: str
    ) -> UserInfo:
        """Create a user (password hashed with argon2; None = no password login, tokens only).

        Raises UsageError NBA311 (bad name/role/short password), Conflict NBA307 (exists).
        Audited as ``user.create``.
        """
        accounts.check_user_name(name)
        parsed = Role.parse(role)
        pw_hash = None
        if password is not None:
            accounts.check_password_strength(password)
            pw_hash = accounts.hash_password(password)
        try:
            with self._write() as s:
                if s.scalar(select(User.id).where(User.name == name)) is not None:
                    raise Conflict(f"user {name!r} already exists", code="NBA307")
                row = User(name=name, role=parsed.value, password_hash=pw_hash,
                           created_at=utcnow(), disabled=False)
                s.add(row)
                s.flush()
                append_event(s, "user.create", actor=actor, target=name,
                             details={"role": parsed.value})
                return user_info(row)
        except IntegrityError:  # created concurrently by someone else
            raise Conflict(f"user {name!r} already exists", code="NBA307") from None

    def get_user(self, name: str) -> UserInfo:
        """The user called ``name`` (disabled ones too); NotFound NBA302 otherwise."""
        with self._read() as s:
            return user_info(get_user_row(s, name))

    def find_user(self, name: str) -> UserInfo | None:
        """Like :meth:`get_user` but None when missing."""
        with self._read() as s:
            row = s.scalars(select(User).where(User.name == name)).first()
            return user_info(row) if row else None

    def has_password(self, name: str) -> bool | None:
        """Whether ``name`` can log in with a password (None: no such user). Users made by a
        JupyterHub login, and token-only users, have none."""
        with self._read() as s:
            row = s.execute(select(User.id, User.password_hash).where(User.name == name)).first()
            return None if row is None else row[1] is not None

    def list_users(self, *, include_disabled: bool = True) -> list[UserInfo]:
        """All users ordered by name."""
        stmt = select(User).order_by(User.name)
        if not include_disabled:
            stmt = stmt.where(User.disabled.is_(False))
        with self._read() as s:
            return [user_info(r) for r in s.scalars(stmt)]

    def count_users(self) -> int:
        with self._read() as s:
            return int(s.scalar(select(func.count(User.id))) or 0)

    def set_role(self, name: str, role: Role | str, *, actor: str) -> UserInfo:
        """Change a user's role; audited as ``user.role`` (details: old, new)."""
        parsed = Role.parse(role)
        with self._write() as s:
            row = get_user_row(s, name, for_update=True)
            old = row.role
            row.role = parsed.value
            append_event(s, "user.role", actor=actor, target=name,
                         details={"old": old, "new": parsed.value})
            s.flush()
            return user_info(row)

    def set_password(self, name: str, password: str, *, actor: str) -> None:
        """Set a new password (NBA311 if too short); audited as ``user.password``."""
        accounts.check_password_strength(password)
        pw_hash = accounts.hash_password(password)
        with self._write() as s:
            row = get_user_row(s, name, for_update=True)
            row.password_hash = pw_hash
            end_user_sessions(s, row.id)  # every browser logged in with the old one is out
            append_event(s, "user.password", actor=actor, target=name)

    def disable_user(self, name: str, *, actor: str, disabled: bool = True) -> UserInfo:
        """Disable (or re-enable) a user: no login, tokens refused, sessions ended. Audited."""
        with self._write() as s:
            row = get_user_row(s, name, for_update=True)
            row.disabled = disabled
            if disabled:
                end_user_sessions(s, row.id)
            append_event(s, "user.disable" if disabled else "user.enable", actor=actor,
                         target=name)
            s.flush()
            return user_info(row)

    # -- logins ------------------------------------------------------------------------------

    def recent_login_failures(self, name: str, ip: str | None) -> int:
        """Failed logins for ``name`` from ``ip`` in the window, since the last success."""
        with self._read() as s:
            return self._failures(s, name, ip)[0]

    def _failures(self, s: Session, name: str, ip: str | None) -> tuple[int, int]:
        """(failures for name+ip since the last success in the window, failures for ip)."""
        cutoff = utcnow() - timedelta(seconds=self.login_window_s)
        ev = AuditEventRow
        same_ip = ev.ip.is_(None) if ip is None else ev.ip == ip
        last_ok = s.scalar(select(func.max(ev.at)).where(
            ev.action == "login", ev.target == name, same_ip, ev.at >= cutoff))
        since = max(cutoff, last_ok) if last_ok is not None else cutoff
        per_user = s.scalar(select(func.count(ev.id)).where(
            ev.action == "login.failed", ev.target == name, same_ip, ev.at > since)) or 0
        per_ip = 0
        if ip is not None:
            per_ip = s.scalar(select(func.count(ev.id)).where(
                ev.action == "login.failed", ev.ip == ip, ev.at > cutoff)) or 0
        return int(per_user), int(per_ip)

    def verify_login(self, name: str, password: str, *, ip: str | None = None) -> UserInfo:
        """Check a login; audited as ``login`` or ``login.failed`` (with ``ip``).

        Raises AuthRequired NBA308 (unknown user, wrong password, disabled user: one message)
        or TooManyAttempts NBA309 (HTTP 429) when the user name + IP had
        ``login_max_failures`` failures (or the IP ``login_max_failures_per_ip``) within
        ``login_window_s`` seconds since its last success. Rehashes the password if argon2's
        parameters changed. A name longer than any user name can be is clipped first
        (:func:`nbapps.accounts.login_name`): it never matches, and never fills the audit log.
        """
        name = accounts.login_name(name)
        with self._read() as s:
            per_user, per_ip = self._failures(s, name, ip)
            row = s.scalars(select(User).where(User.name == name)).first()
            user = user_info(row) if row else None
            stored_hash = row.password_hash if row else None
        by_ip = per_ip >= self.login_max_failures_per_ip
        if per_user >= self.login_max_failures or by_ip:
            self._login_throttled(name, ip, by_ip=by_ip)
            raise TooManyAttempts(
                f"too many failed logins; try again in {self.login_window_s // 60} minutes"
            )
        ok, new_hash = accounts.verify_password(stored_hash, password)
        if not ok or user is None or user.disabled:
            reason = ("unknown user" if user is None else
                      "wrong password" if not ok else "disabled")
            self._login_failed(name, ip, reason)
            raise AuthRequired("wrong user name or password", code="NBA308")
        with self._write() as s:
            if new_hash is not None:
                s.execute(update(User).where(User.id == user.id)
                          .values(password_hash=new_hash))
            append_event(s, "login", actor=name, target=name, ip=ip)
        return user

    def _login_failed(self, name: str, ip: str | None, reason: str) -> None:
        with self._write() as s:
            append_event(s, "login.failed", actor=name, target=name, ip=ip,
                         details={"reason": reason})

    def _login_throttled(self, name: str, ip: str | None, *, by_ip: bool) -> None:
        """Record the first throttled login of the window for this user name + address (or,
        ``by_ip``, for the address whatever the name); count the others."""
        target = "" if by_ip else name
        key = (target, ip)
        cutoff = utcnow() - timedelta(seconds=self.login_window_s)
        ev = AuditEventRow
        same_ip = ev.ip.is_(None) if ip is None else ev.ip == ip
        recorded = select(ev.id).where(ev.action == "login.throttled", ev.target == target,
                                       same_ip, ev.at >= cutoff).limit(1)
        with self._read() as s:
            already = s.scalar(recorded) is not None
        counts = self._throttle_counts()
        with self._throttle_lock:
            if already:
                if key in counts or len(counts) < MAX_THROTTLE_KEYS:
                    counts[key] += 1
                return
            unrecorded = counts.pop(key, 0)
        with self._write() as s:
            append_event(s, "login.throttled", actor=name, target=target, ip=ip,
                         details={"limit": "address" if by_ip else "user name and address",
                                  "unrecorded_before": unrecorded})

    _throttle_lock = threading.Lock()

    def _throttle_counts(self) -> Counter[tuple[str, str | None]]:
        """Throttled logins not written to the audit log, per key, since its last record
        (this process only)."""
        counts: Counter[tuple[str, str | None]] | None = getattr(self, "_throttled", None)
        if counts is None:
            counts = self._throttled = Counter()
        return counts

    def unrecorded_throttled_logins(self) -> int:
        """Throttled logins this process refused without an audit row (their total)."""
        with self._throttle_lock:
            return sum(self._throttle_counts().values())

    # -- API tokens --------------------------------------------------------------------------

    def create_token(self, user_name: str, *, actor: str, label: str = ""
                     ) -> tuple[str, TokenInfo]:
        """New API token for ``user_name``: returns ``(plain_token, info)``; the plain token is
        never stored or shown again. Audited as ``token.create``."""
        token = accounts.generate_token()
        with self._write() as s:
            user = get_user_row(s, user_name)
            row = ApiToken(user_id=user.id, token_hash=accounts.hash_token(token),
                           prefix=accounts.token_display_prefix(token),
                           label=str(label or "")[:200], created_at=utcnow())
            s.add(row)
            s.flush()
            append_event(s, "token.create", actor=actor, target=user_name,
                         details={"prefix": row.prefix, "label": row.label})
            return token, token_info(row, user.name)

    def verify_token(self, token: str) -> UserInfo:
        """The (enabled) user owning ``token``; AuthRequired NBA310 if unknown/revoked/disabled.
        Updates ``last_used_at`` at most once a minute."""
        if not accounts.looks_like_token(token):
            raise AuthRequired("invalid API token", code="NBA310")
        digest = accounts.hash_token(token)
        with self._read() as s:
            row = s.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
            if (row is None or row.revoked_at is not None or row.user.disabled
                    or not accounts.token_matches(token, row.token_hash)):
                raise AuthRequired("invalid or revoked API token", code="NBA310")
            user = user_info(row.user)
            token_id, last_used = row.id, row.last_used_at
        now = utcnow()
        if last_used is None or now - last_used >= TOKEN_TOUCH_INTERVAL:
            with self._write() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token_id)
                          .values(last_used_at=now))
        return user

    def list_tokens(self, user_name: str, *, include_revoked: bool = True) -> list[TokenInfo]:
        """The user's tokens, newest first (prefixes only)."""
        with self._read() as s:
            user = get_user_row(s, user_name)
            stmt = (select(ApiToken).where(ApiToken.user_id == user.id)
                    .order_by(ApiToken.id.desc()))
            if not include_revoked:
                stmt = stmt.where(ApiToken.revoked_at.is_(None))
            return [token_info(r, user.name) for r in s.scalars(stmt)]

    def revoke_token(self, user_name: str, prefix: str, *, actor: str) -> TokenInfo:
        """Revoke the user's token whose display prefix is ``prefix`` (a unique start of it is
        enough; the whole token works too); NotFound NBA302, Conflict NBA303 if ambiguous.
        Audited as ``token.revoke``."""
        prefix = (prefix or "").strip()
        if len(prefix) < 4:
            raise UsageError("give at least 4 characters of the token prefix", code="NBA100")
        with self._write() as s:
            user = get_user_row(s, user_name)
            stmt = select(ApiToken).where(ApiToken.user_id == user.id,
                                          ApiToken.revoked_at.is_(None))
            if len(prefix) > accounts.DISPLAY_PREFIX_LEN:
                stmt = stmt.where(ApiToken.token_hash == accounts.hash_token(prefix))
            else:
                stmt = stmt.where(ApiToken.prefix.startswith(prefix, autoescape=True))
            rows = list(s.scalars(stmt.with_for_update(of=ApiToken)))
            if not rows:
                raise NotFound(f"no active token of {user_name!r} starts with {prefix!r}")
            if len(rows) > 1:
                raise Conflict(f"{len(rows)} tokens start with {prefix!r}; give more of it",
                               code="NBA303")
            row = rows[0]
            row.revoked_at = utcnow()
            append_event(s, "token.revoke", actor=actor, target=user_name,
                         details={"prefix": row.prefix})
            s.flush()
            return token_info(row, user.name)
