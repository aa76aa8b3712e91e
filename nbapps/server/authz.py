"""Who may do what (the Authorizer half of jupyter_server's identity/permission split).

Identity (who is this request?) lives in :mod:`nbapps.server.identity`; this module only answers
"may this user do that?". The role → permission table is the catalog's one table,
:data:`nbapps.accounts.ROLE_PERMISSIONS`; the web layer adds only three requirements that are not
role permissions: :data:`PUBLIC` (login page, static files, health check), :data:`AUTHENTICATED`
(any account: own tokens, logout) and :data:`OPEN_APPS` (running a live app: ``view_apps``, or
anyone when ``allow_anonymous_apps`` is on).

Every handler declares, per HTTP method, the one requirement it needs (see
:mod:`nbapps.server.base`); a method without a declaration is refused. Object-level rules (an
analyst sees only their own submissions, a reviewer never decides on their own work) are checked
by the handlers and the catalog on top of this.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from ..accounts import ROLE_PERMISSIONS, Permission, Role


class Access(str, Enum):
    """Requirements that are not a role permission."""

    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    OPEN_APPS = "open_apps"


PUBLIC = Access.PUBLIC
AUTHENTICATED = Access.AUTHENTICATED
OPEN_APPS = Access.OPEN_APPS

#: what a handler method may declare
Requirement = Permission | Access

ANONYMOUS = "anonymous"
ROLES: tuple[str, ...] = tuple(r.value for r in Role)


def role_name(role: object) -> str:
    """``"admin"`` for ``Role.ADMIN`` or ``"admin"`` (``str()`` of a str-Enum is not its value)."""
    return str(role.value) if isinstance(role, Enum) else str(role)


class HasRole(Protocol):
    @property
    def role(self) -> str: ...


@dataclass(frozen=True)
class Authorizer:
    """Answers permission questions; unknown roles get nothing beyond :data:`PUBLIC`."""

    allow_anonymous_apps: bool = False

    def role_of(self, user: HasRole | None) -> str:
        return ANONYMOUS if user is None else role_name(user.role)

    def has_permission(self, user: HasRole | None, permission: Permission) -> bool:
        if user is None:
            return False
        try:
            role = Role(role_name(user.role))
        except ValueError:
            return False
        return permission in ROLE_PERMISSIONS[role]

    def is_allowed(self, user: HasRole | None, requirement: Requirement) -> bool:
        if requirement is Access.PUBLIC:
            return True
        if requirement is Access.AUTHENTICATED:
            return user is not None
        if requirement is Access.OPEN_APPS:
            if user is None:
                return self.allow_anonymous_apps
            return self.has_permission(user, Permission.VIEW_APPS)
        return self.has_permission(user, requirement)
