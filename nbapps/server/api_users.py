"""JSON API of accounts: me and my tokens; users, roles and tokens (admins); the audit log."""
from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from ..accounts import Permission
from ..errors import UsageError
from .authz import AUTHENTICATED, Requirement
from .base import APIHandler
from .routes import Op, Param
from .views import int_arg


def _label(body: dict[str, Any]) -> str:
    label = body.get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise UsageError("label must be text of at most 200 characters", code="NBA331")
    return label


class MeHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": AUTHENTICATED}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("Who am I: name, role, permissions.")}

    def get(self) -> None:
        user = self.require_user()
        perms = sorted(p.value for p in Permission
                       if self.ctx.authorizer.has_permission(user, p))
        self.write_json({"name": user.name, "role": user.role, "permissions": perms,
                         "authenticated_by": user.via})


class MyTokensHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": AUTHENTICATED, "POST": AUTHENTICATED}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("My API tokens (prefixes only)."),
        "POST": Op("Create an API token for me; the token is in the answer only.",
                   body="application/json", ok=201,
                   body_schema={"type": "object", "properties": {"label": {"type": "string"}}}),
    }

    def get(self) -> None:
        user = self.require_user()
        self.write_json({"items": [t.to_dict() for t in self.ctx.catalog.list_tokens(user.name)]})

    async def post(self) -> None:
        user = self.require_user()
        label = _label(self.json_body())
        token, info = await self.ctx.run(self.ctx.catalog.create_token, user.name,
                                         actor=user.name, label=label)
        self.write_json({"token": token, **info.to_dict()}, status=201)


class MyTokenHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"DELETE": AUTHENTICATED}
    docs: ClassVar[dict[str, Op]] = {"DELETE": Op("Revoke one of my tokens (by its prefix).")}

    async def delete(self, prefix: str) -> None:
        user = self.require_user()
        info = await self.ctx.run(self.ctx.catalog.revoke_token, user.name, prefix,
                                  actor=user.name)
        self.ctx.identity.invalidate()
        self.write_json(info.to_dict())


class UsersHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.MANAGE_USERS, "POST": Permission.MANAGE_USERS,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("All users."),
        "POST": Op("Create a user; without a password one is generated and returned once.",
                   body="application/json", ok=201, body_schema={
                       "type": "object", "required": ["name", "role"],
                       "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                                      "password": {"type": "string"}}}),
    }

    def get(self) -> None:
        self.write_json({"items": [u.to_dict() for u in self.ctx.catalog.list_users()]})

    async def post(self) -> None:
        from ..accounts import generate_password

        user = self.require_user()
        body = self.json_body()
        name, role, password = body.get("name"), body.get("role"), body.get("password")
        if not isinstance(name, str) or not isinstance(role, str):
            raise UsageError("name and role are required", code="NBA331")
        generated = password is None
        if generated:
            password = generate_password()
        elif not isinstance(password, str):
            raise UsageError("password must be text", code="NBA331")
        info = await self.ctx.run(self.ctx.catalog.create_user, name, role, password,
                                  actor=user.name)
        out = info.to_dict()
        if generated:
            out["password"] = password
        self.write_json(out, status=201)


class UserHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.MANAGE_USERS, "PATCH": Permission.MANAGE_USERS,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("One user with their tokens."),
        "PATCH": Op("Change a user's role and/or disable or enable them; `end_sessions: true` "
                    "logs them out everywhere (their API tokens stay valid).",
                    body="application/json", body_schema={
                        "type": "object", "properties": {"role": {"type": "string"},
                                                         "disabled": {"type": "boolean"},
                                                         "end_sessions": {"type": "boolean"}}}),
    }

    def get(self, name: str) -> None:
        info = self.ctx.catalog.get_user(name)
        out = info.to_dict()
        out["tokens"] = [t.to_dict() for t in self.ctx.catalog.list_tokens(name)]
        self.write_json(out)

    async def patch(self, name: str) -> None:
        user = self.require_user()
        body = self.json_body()
        end_sessions = body.get("end_sessions", False)
        if not isinstance(end_sessions, bool):
            raise UsageError("end_sessions must be true or false", code="NBA331")
        info = self.ctx.catalog.get_user(name)
        if "role" in body:
            if not isinstance(body["role"], str):
                raise UsageError("role must be text", code="NBA331")
            info = await self.ctx.run(self.ctx.catalog.set_role, name, body["role"],
                                      actor=user.name)
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise UsageError("disabled must be true or false", code="NBA331")
            info = await self.ctx.run(self.ctx.catalog.disable_user, name, actor=user.name,
                                      disabled=body["disabled"])
        out = info.to_dict()
        if end_sessions:
            out["sessions_ended"] = await self.ctx.run(
                self.ctx.catalog.end_sessions, name, actor=user.name, ip=self.client_ip())
        self.ctx.identity.invalidate()
        self.write_json(out)


class UserTokensHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.MANAGE_USERS, "POST": Permission.MANAGE_USERS,
        "DELETE": Permission.MANAGE_USERS,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("A user's tokens (prefixes only)."),
        "POST": Op("Create a token for a user; the token is in the answer only.",
                   body="application/json", ok=201,
                   body_schema={"type": "object", "properties": {"label": {"type": "string"}}}),
        "DELETE": Op("Revoke a user's token.", query=(
            Param("prefix", description="the token's display prefix", required=True),)),
    }

    def get(self, name: str) -> None:
        self.write_json({"items": [t.to_dict() for t in self.ctx.catalog.list_tokens(name)]})

    async def post(self, name: str) -> None:
        user = self.require_user()
        label = _label(self.json_body())
        token, info = await self.ctx.run(self.ctx.catalog.create_token, name, actor=user.name,
                                         label=label)
        self.write_json({"token": token, **info.to_dict()}, status=201)

    async def delete(self, name: str) -> None:
        user = self.require_user()
        prefix = self.get_argument("prefix", "")
        if not prefix:
            raise UsageError("prefix is required", code="NBA331")
        info = await self.ctx.run(self.ctx.catalog.revoke_token, name, prefix, actor=user.name)
        self.ctx.identity.invalidate()
        self.write_json(info.to_dict())


def _since(handler: APIHandler) -> datetime | None:
    raw = handler.get_argument("since", "")
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError("since must be an ISO 8601 date-time", code="NBA331") from None
    if value.tzinfo is None:
        from datetime import timezone

        value = value.replace(tzinfo=timezone.utc)
    return value


class AuditHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_AUDIT}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Audit events, newest first; `format=jsonl` exports every event, oldest "
                  "first, as JSON lines.", query=(
                      Param("format", description="json (default) | jsonl",
                            enum=("json", "jsonl")),
                      Param("limit", "integer"), Param("before_id", "integer"),
                      Param("actor"), Param("action"), Param("target"),
                      Param("since", description="ISO 8601 date-time"),
                  )),
    }

    async def get(self) -> None:
        if self.get_argument("format", "json") == "jsonl":
            await stream_audit_jsonl(self, _since(self))
            return
        limit = int_arg(self, "limit", 100, hi=1000)
        before = self.get_argument("before_id", "")
        events = self.ctx.catalog.list_audit(
            limit=limit, before_id=int(before) if before.isdigit() else None,
            actor=self.get_argument("actor", None) or None,
            action=self.get_argument("action", None) or None,
            target=self.get_argument("target", None) or None, since=_since(self))
        self.write_json({"items": [e.to_dict() for e in events],
                         "next_before_id": events[-1].id if len(events) == limit else None})


async def stream_audit_jsonl(handler: Any, since: datetime | None) -> None:
    """Send the whole audit log as JSON lines, in batches (flushing between them)."""
    handler.set_header("Content-Type", "application/x-ndjson; charset=UTF-8")
    handler.set_header("Content-Disposition", 'attachment; filename="nbapps-audit.jsonl"')
    lines = handler.ctx.catalog.iter_audit_jsonl(since=since)
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= 500:
            handler.write("".join(buf))
            buf.clear()
            await handler.flush()
    if buf:
        handler.write("".join(buf))
    handler.finish()
