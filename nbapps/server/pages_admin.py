"""Admin pages: users (create, role, disable, tokens) and the audit log (+ JSON lines export)."""
from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlencode

from ..accounts import Permission, Role, generate_password
from ..errors import UsageError
from .api_users import stream_audit_jsonl
from .authz import Requirement
from .base import PageHandler
from .routes import Param
from .views import NOTICES, int_arg


class UsersHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.MANAGE_USERS, "POST": Permission.MANAGE_USERS,
    }
    nav = "admin"

    def get(self) -> None:
        show_users(self, **NOTICES.get(self.get_argument("done", ""), {}))

    async def post(self) -> None:
        """Create a user; the password (given or generated) is shown once."""
        admin = self.require_user()
        name = self.get_body_argument("name", "").strip()
        role = self.get_body_argument("role", "viewer")
        password = self.get_body_argument("password", "") or generate_password()
        info = await self.ctx.run(self.ctx.catalog.create_user, name, role, password,
                                  actor=admin.name)
        show_users(self, created=info, created_password=password,
                   notice=f"User {info.name} created.", notice_kind="ok")


def show_users(handler: PageHandler, **values: Any) -> None:
    cat = handler.ctx.catalog
    users = cat.list_users()
    tokens = {u.name: cat.list_tokens(u.name, include_revoked=False) for u in users}
    handler.render_page("admin_users.html", users=users, tokens=tokens,
                        roles=[r.value for r in Role], **values)


class UserUpdateHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.MANAGE_USERS}

    async def post(self, name: str) -> None:
        admin = self.require_user()
        role = self.get_body_argument("role", "")
        disabled = self.get_body_argument("disabled", "")
        if role:
            await self.ctx.run(self.ctx.catalog.set_role, name, role, actor=admin.name)
        elif disabled in ("0", "1"):
            await self.ctx.run(self.ctx.catalog.disable_user, name, actor=admin.name,
                               disabled=disabled == "1")
        elif self.get_body_argument("end_sessions", "") == "1":  # log out everywhere
            await self.ctx.run(self.ctx.catalog.end_sessions, name, actor=admin.name,
                               ip=self.client_ip())
        else:
            raise UsageError("nothing to change: give a role, disabled=0/1 or end_sessions=1",
                             code="NBA331")
        self.ctx.identity.invalidate()
        self.redirect(self.url("/admin/users?done=user"))


class UserTokenHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.MANAGE_USERS}
    nav = "admin"

    async def post(self, name: str) -> None:
        admin = self.require_user()
        label = self.get_body_argument("label", "")[:200]
        token, info = await self.ctx.run(self.ctx.catalog.create_token, name, actor=admin.name,
                                         label=label)
        show_users(self, new_token=token, new_token_user=name,
                   notice=f"Token created for {name}.", notice_kind="ok")


class UserTokenRevokeHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.MANAGE_USERS}

    async def post(self, name: str, prefix: str) -> None:
        admin = self.require_user()
        await self.ctx.run(self.ctx.catalog.revoke_token, name, prefix, actor=admin.name)
        self.ctx.identity.invalidate()
        self.redirect(self.url("/admin/users?done=token"))


class AuditHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_AUDIT}
    query_params: ClassVar[dict[str, tuple[Param, ...]]] = {
        "GET": (Param("limit", "integer"), Param("before_id", "integer"))}
    nav = "audit"

    def get(self) -> None:
        per = int_arg(self, "limit", 100, hi=1000)
        before = self.get_argument("before_id", "")
        actor = self.get_argument("actor", "").strip() or None
        action = self.get_argument("action", "").strip() or None
        events = self.ctx.catalog.list_audit(
            limit=per, before_id=int(before) if before.isdigit() else None,
            actor=actor, action=action)
        next_url = None
        if len(events) == per:
            args = {k: v for k, v in (("actor", actor), ("action", action)) if v}
            args["before_id"] = str(events[-1].id)
            next_url = self.url("/admin/audit?" + urlencode(args))
        self.render_page("admin_audit.html", events=events, actor=actor or "",
                         action=action or "", next_url=next_url)


class AuditExportHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_AUDIT}

    async def get(self) -> None:
        await stream_audit_jsonl(self, None)
