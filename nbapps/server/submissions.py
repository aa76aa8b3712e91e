"""Deciding on submissions, withdrawing and commenting, shared by the API and the page forms."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..errors import PermissionDenied, UsageError
from ..review import DECISIONS, Action
from .identity import WebUser
from .previews import stop_preview
from .views import is_reviewer, version_for

if TYPE_CHECKING:
    from .base import BaseHandler
    from .context import ServerContext

log = logging.getLogger("nbapps.server.submissions")

COMMENT_ACTION = "submission.comment"
MAX_COMMENT = 10_000
#: decisions the author must be told the reason of (NBA350 without a comment)
REASON_REQUIRED = frozenset({Action.REJECT, Action.REQUEST_CHANGES})


def comment_target(version_id: int) -> str:
    return f"version:{version_id}"


def parse_decision(value: Any) -> Action:
    if not isinstance(value, str):
        raise UsageError("decision must be one of approve, request_changes, reject",
                         code="NBA331")
    try:
        action = Action.parse(value)
    except Exception:
        action = None
    if action not in DECISIONS:
        raise UsageError(f"unknown decision {value!r}: use approve, request_changes or reject",
                         code="NBA331")
    assert action is not None
    return action


def clean_comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UsageError("comment must be text", code="NBA331")
    if len(value) > MAX_COMMENT:
        raise UsageError(f"comment longer than {MAX_COMMENT} characters", code="NBA331")
    return value.strip()


def require_reason(action: Action, comment: Any) -> str:
    """The cleaned comment; NBA350 when ``action`` needs a reason and the comment is empty."""
    text = clean_comment(comment)
    if action in REASON_REQUIRED and not text:
        what = "reject" if action is Action.REJECT else "request changes"
        raise UsageError(f"a comment is required to {what}: tell the author "
                         + ("why" if action is Action.REJECT else "what to change"),
                         code="NBA350")
    return text


async def decide(handler: BaseHandler, user: WebUser, version_id: int, action: Action,
                 comment: Any) -> Any:
    """One review decision; the catalog enforces four-eyes (NBA304) and races (NBA303/305).

    *Reject* and *Request changes* carry a reason (NBA350 without one), checked before the
    catalog is asked, so that no decision without a reason is ever recorded.
    """
    ctx = handler.ctx
    text = require_reason(action, comment)
    version = await ctx.run(ctx.catalog.decide, version_id, user.name, action, text,
                            ip=handler.client_ip())
    ctx.changed()
    if action == "approve" or getattr(action, "value", None) == "approve":
        ctx.live_changed(version.app_slug)
    stop_preview(ctx, version_id)
    return version


async def withdraw(handler: BaseHandler, user: WebUser, version_id: int, comment: Any) -> Any:
    ctx = handler.ctx
    text = clean_comment(comment)
    version = await ctx.run(ctx.catalog.withdraw, version_id, user.name, text,
                            ip=handler.client_ip())
    ctx.changed()
    stop_preview(ctx, version_id)
    return version


async def add_comment(handler: BaseHandler, user: WebUser, version_id: int, comment: Any
                      ) -> dict[str, Any]:
    """A comment without a decision (reviewers and the submitter), kept in the audit log.

    The catalog has no comment table yet; an append-only audit event per comment keeps who,
    when and what, and :func:`comments_of` reads them back.
    """
    ctx = handler.ctx
    text = clean_comment(comment)
    if not text:
        raise UsageError("the comment is empty", code="NBA331")
    version = version_for(ctx, user, version_id)
    event = await ctx.run(ctx.catalog.audit, COMMENT_ACTION, actor=user.name,
                          target=comment_target(version.id), version_sha256=version.sha256,
                          ip=handler.client_ip(), details={"comment": text})
    return {"id": event.id, "author": user.name, "comment": text, "at": event.at}


def comments_of(ctx: ServerContext, version_id: int) -> list[dict[str, Any]]:
    events = ctx.catalog.list_audit(action=COMMENT_ACTION, target=comment_target(version_id),
                                    limit=500)
    return [{"id": e.id, "author": e.actor, "comment": e.details.get("comment", ""), "at": e.at}
            for e in reversed(events)]


def check_can_view(ctx: ServerContext, user: WebUser, version: Any) -> None:
    if not (is_reviewer(ctx, user) or version.submitter == user.name):
        raise PermissionDenied("only reviewers and its author can see this submission")


__all__ = ["REASON_REQUIRED", "add_comment", "comments_of", "decide", "parse_decision",
           "require_reason", "withdraw"]
