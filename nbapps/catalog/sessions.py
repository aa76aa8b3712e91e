"""Login sessions kept in the catalog, so that ending one holds on every replica.

The browser's signed session cookie holds a random session id (256 bits); the catalog stores only
its SHA-256 (like API tokens: a copy of the database opens no session). A session is valid while
its row exists, is not revoked, has not expired and its user is enabled. Logout ends one
session; a new password, disabling the user or an admin's "end sessions" end all of a user's.

The server caches the answer for a few seconds (:mod:`nbapps.server.identity`): one database read
per session per cache period and at most one write (``last_seen_at``) a minute. Expired rows (and
revoked ones after a day) are deleted now and then by :meth:`SessionsMixin.create_session`, and
by :meth:`SessionsMixin.forget_expired_sessions` at server start.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from ..errors import NotFound
from .audit import append_event
from .db import CatalogBase
from .models import LoginSession, User, utcnow

if TYPE_CHECKING:
    from .values import UserInfo

#: random bytes of a session id (``secrets.token_urlsafe``: 43 characters)
SESSION_ID_BYTES = 32
#: ``last_seen_at`` is written at most this often per session
SESSION_TOUCH_INTERVAL = timedelta(seconds=60)
#: revoked rows are kept this long (an admin can still see what ended), then deleted
KEEP_REVOKED = timedelta(days=1)
#: seconds between two clean-ups of old rows by one catalog object
CLEANUP_INTERVAL_S = 600.0

_SESSION_ID_RE = re.compile(r"[A-Za-z0-9_-]{40,64}")


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


def hash_session_id(session_id: str) -> str:
    """Hex SHA-256 of a session id: what the catalog stores and looks up."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def looks_like_session_id(value: object) -> bool:
    return isinstance(value, str) and _SESSION_ID_RE.fullmatch(value) is not None


def end_user_sessions(s: Session, user_id: int, now: datetime | None = None) -> int:
    """Revoke every live session of ``user_id`` inside ``s``'s transaction; the number ended."""
    result = s.execute(update(LoginSession)
                       .where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
                       .values(revoked_at=now or utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


class SessionsMixin(CatalogBase):
    _sessions_cleaned_at: float = 0.0

    def create_session(self, user_id: int, *, days: float) -> str:
        """A new session of user ``user_id`` lasting ``days``; returns its id (shown only here:
        it goes into the signed cookie)."""
        session_id = new_session_id()
        now = utcnow()
        with self._write() as s:
            s.add(LoginSession(id_hash=hash_session_id(session_id), user_id=user_id,
                               created_at=now, last_seen_at=now,
                               expires_at=now + timedelta(days=days)))
        if time.monotonic() - self._sessions_cleaned_at > CLEANUP_INTERVAL_S:
            self.forget_expired_sessions()
        return session_id

    def session_user(self, session_id: str) -> UserInfo | None:
        """The enabled user of a live session (not ended, not expired), else None.

        Writes ``last_seen_at`` at most once a minute per session.
        """
        from .users import user_info

        if not looks_like_session_id(session_id):
            return None
        now = utcnow()
        stmt = (select(LoginSession.id, LoginSession.expires_at, LoginSession.revoked_at,
                       LoginSession.last_seen_at, User)
                .join(User, User.id == LoginSession.user_id)
                .where(LoginSession.id_hash == hash_session_id(session_id)))
        with self._read() as s:
            found = s.execute(stmt).first()
            if found is None:
                return None
            row_id, expires_at, revoked_at, last_seen_at, user = found
            if revoked_at is not None or expires_at <= now or user.disabled:
                return None
            info = user_info(user)
        if now - last_seen_at >= SESSION_TOUCH_INTERVAL:
            with self._write() as s:
                s.execute(update(LoginSession).where(LoginSession.id == row_id)
                          .values(last_seen_at=now))
        return info

    def live_session_hashes(self, user_id: int) -> frozenset[str]:
        """The stored hashes (:func:`hash_session_id`) of ``user_id``'s live sessions: not
        ended, not expired, and the user enabled (empty otherwise). App tickets bound to a
        session are checked against these (:mod:`nbapps.server.app_tickets`); one read, no
        write."""
        with self._read() as s:
            rows = s.scalars(
                select(LoginSession.id_hash)
                .join(User, User.id == LoginSession.user_id)
                .where(LoginSession.user_id == int(user_id), LoginSession.revoked_at.is_(None),
                       LoginSession.expires_at > utcnow(), User.disabled.isnot(True)))
            return frozenset(rows)

    def end_session(self, session_id: str, *, actor: str, ip: str | None = None) -> bool:
        """Logout: end one session (True if it was live). Audited as ``logout``."""
        ended = 0
        with self._write() as s:
            if looks_like_session_id(session_id):
                result = s.execute(
                    update(LoginSession)
                    .where(LoginSession.id_hash == hash_session_id(session_id),
                           LoginSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
                ended = int(getattr(result, "rowcount", 0) or 0)
            append_event(s, "logout", actor=actor, target=f"user:{actor}", ip=ip)
        return ended > 0

    def end_sessions(self, user_name: str, *, actor: str, ip: str | None = None) -> int:
        """End every session of ``user_name`` ("log out everywhere"); the number ended.
        NotFound NBA302 for an unknown user. Audited as ``user.sessions_end``."""
        with self._write() as s:
            user_id = s.scalar(select(User.id).where(User.name == user_name))
            if user_id is None:
                raise NotFound(f"no user named {user_name!r}")
            ended = end_user_sessions(s, user_id)
            append_event(s, "user.sessions_end", actor=actor, target=user_name, ip=ip,
                         details={"ended": ended})
        return ended

    def count_sessions(self, user_name: str) -> int:
        """Live sessions of ``user_name`` (0 for an unknown user)."""
        with self._read() as s:
            return int(s.scalar(
                select(func.count(LoginSession.id))
                .join(User, User.id == LoginSession.user_id)
                .where(User.name == user_name, LoginSession.revoked_at.is_(None),
                       LoginSession.expires_at > utcnow())) or 0)

    def forget_expired_sessions(self) -> int:
        """Delete expired sessions and those ended more than a day ago; the number deleted."""
        now = utcnow()
        self._sessions_cleaned_at = time.monotonic()
        with self._write() as s:
            result = s.execute(delete(LoginSession).where(or_(
                LoginSession.expires_at <= now, LoginSession.revoked_at < now - KEEP_REVOKED)))
        return int(getattr(result, "rowcount", 0) or 0)
