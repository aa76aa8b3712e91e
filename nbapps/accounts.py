"""Roles, permissions, password hashing and API tokens (no database here).

Roles are ordered: ``viewer < analyst < reviewer < admin``; each role has the permissions of the
roles below it plus its own (see :data:`ROLE_PERMISSIONS`). Passwords are hashed with argon2id
(argon2-cffi's :class:`~argon2.PasswordHasher`, its current recommended parameters); a login with
a hash made under older parameters returns a new hash to store. API tokens are 256-bit random
strings shown once; the catalog stores only their SHA-256 (a fast hash is right for high-entropy
secrets) and a short prefix for display.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .errors import NbappsError, UsageError

TOKEN_PREFIX = "nba_"
#: characters of the plain token kept (in clear) for display and revocation: "nba_" + 8
DISPLAY_PREFIX_LEN = len(TOKEN_PREFIX) + 8
_NAME_RE = re.compile(r"[^\s:/\x00-\x1f\x7f]{1,64}")


class Permission(str, Enum):
    VIEW_APPS = "view_apps"            # open live apps, browse the gallery
    SUBMIT = "submit"                  # submit bundles, withdraw own submissions
    REVIEW = "review"                  # see the queue, approve / reject / request changes
    ROLLBACK = "rollback"              # put the previous live version back
    MANAGE_USERS = "manage_users"      # create users, change roles, disable
    VIEW_AUDIT = "view_audit"          # read and export the audit log
    CURATE = "curate"                  # feature apps on the gallery's front page, categories


class Role(str, Enum):
    """A user's role; compare with ``>=`` (``Role.REVIEWER >= Role.ANALYST`` is true)."""

    VIEWER = "viewer"
    ANALYST = "analyst"
    REVIEWER = "reviewer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Role):
            return NotImplemented
        return self.rank < other.rank

    def can(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self]

    @classmethod
    def parse(cls, value: str | Role) -> Role:
        """``Role`` from its name (case-insensitive); :class:`UsageError` NBA311 otherwise."""
        if isinstance(value, Role):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(r.value for r in cls)
            raise UsageError(f"unknown role {value!r} (one of: {names})", code="NBA311") from None


_RANKS = {Role.VIEWER: 0, Role.ANALYST: 1, Role.REVIEWER: 2, Role.ADMIN: 3}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.VIEW_APPS}),
    Role.ANALYST: frozenset({Permission.VIEW_APPS, Permission.SUBMIT}),
    Role.REVIEWER: frozenset({
        Permission.VIEW_APPS, Permission.SUBMIT, Permission.REVIEW, Permission.ROLLBACK,
    }),
    Role.ADMIN: frozenset(Permission),
}


def check_user_name(name: str) -> str:
    """Return ``name`` if acceptable (1-64 visible chars, no whitespace, ':' or '/'), else NBA311.

    ':' is refused so no user can pose as a system actor such as ``cli:root``.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UsageError(
            f"invalid user name {name!r}: 1-64 visible characters, no spaces, ':' or '/'",
            code="NBA311",
        )
    return name


#: longest user name (the catalog column and :func:`check_user_name` agree)
MAX_USER_NAME = 64


def login_name(name: object) -> str:
    """The user name of a login attempt as the catalog records and rate-limits it: a name
    longer than any user name can be is cut to :data:`MAX_USER_NAME` characters plus "…", so
    it matches no user and a megabyte-long name never reaches the audit log."""
    text = name if isinstance(name, str) else str(name)
    if len(text) <= MAX_USER_NAME:
        return text
    return text[:MAX_USER_NAME] + "\u2026"


# -- passwords -------------------------------------------------------------------------------------

_hasher = PasswordHasher()
MIN_PASSWORD_LENGTH = 8


def generate_password(nbytes: int = 15) -> str:
    """A random URL-safe password (``nbytes`` of entropy: 15 → 20 characters)."""
    return secrets.token_urlsafe(nbytes)


def check_password_strength(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            f"password too short: at least {MIN_PASSWORD_LENGTH} characters", code="NBA311"
        )


def hash_password(password: str) -> str:
    """argon2id hash of ``password`` (PHC string, includes salt and parameters)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> tuple[bool, str | None]:
    """Check ``password``; return ``(ok, new_hash)``; ``new_hash`` is set when parameters changed.

    A missing/invalid hash still costs one hash computation so timing does not reveal whether a
    user exists.
    """
    if not password_hash:
        _dummy_verify(password)
        return False, None
    try:
        _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False, None
    new_hash = _hasher.hash(password) if _hasher.check_needs_rehash(password_hash) else None
    return True, new_hash


_DUMMY_HASH: str | None = None


def _dummy_verify(password: str) -> None:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
    with contextlib.suppress(VerificationError, InvalidHashError):
        _hasher.verify(_DUMMY_HASH, password)


# -- API tokens ------------------------------------------------------------------------------------

def generate_token() -> str:
    """A new plain API token: ``nba_`` + 43 URL-safe characters (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Hex SHA-256 of a plain token: what the catalog stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_display_prefix(token: str) -> str:
    """The first characters of a token, kept in clear to name it in lists and ``--revoke``."""
    return token[:DISPLAY_PREFIX_LEN]


def token_matches(token: str, stored_hash: str) -> bool:
    """Constant-time comparison of a plain token against a stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), stored_hash.encode())


def looks_like_token(value: str) -> bool:
    return isinstance(value, str) and value.startswith(TOKEN_PREFIX) and 20 <= len(value) <= 200


class TooManyAttempts(NbappsError):
    """Login refused because of recent failures (HTTP 429)."""

    code = "NBA309"
    http_status = 429
    exit_code = 1
