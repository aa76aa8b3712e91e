"""Review pages: queue, my submissions, one submission (report, notebook, diff, decisions)."""
from __future__ import annotations

from typing import Any, ClassVar

from ..accounts import Permission
from ..errors import NbappsError, NotFound
from ..review import Action, allowed_actions
from .authz import Requirement
from .base import PageHandler
from .notebook_view import diff_lines, notebook_html, version_diff
from .review_data import static_report
from .submissions import add_comment, comments_of, decide, parse_decision, withdraw
from .views import NOTICES, int_arg, send_thumbnail, version_for

#: the sandboxed notebook frame: no script, no plugin, no form, no navigation; only its own
#: inline styles and embedded images; only our pages may frame it
NOTEBOOK_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)


class ReviewQueueHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.REVIEW}
    nav = "review"

    def get(self) -> None:
        page = int_arg(self, "page", 1)
        per = 50
        queue = self.ctx.catalog.list_queue(limit=per + 1, offset=(page - 1) * per)
        self.render_page("review_queue.html", queue=queue[:per], page=page,
                         has_next=len(queue) > per)


class MySubmissionsHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    nav = "my"

    def get(self) -> None:
        user = self.require_user()
        page = int_arg(self, "page", 1)
        per = 50
        items = self.ctx.catalog.list_versions(submitter=user.name, limit=per + 1,
                                               offset=(page - 1) * per)
        self.render_page("my_submissions.html", items=items[:per], page=page,
                         has_next=len(items) > per,
                         **NOTICES.get(self.get_argument("done", ""), {}))


class SubmissionPageHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    nav = "review"

    async def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))
        detail = self.ctx.catalog.get_app(version.app_slug)
        live = detail.live
        report: dict[str, Any] | None
        problems: list[str] = []
        try:
            report = await self.ctx.run(static_report, self.ctx, version)
        except NbappsError as err:
            report = None
            problems.append(f"validation report unavailable: {err.message}")
        diff: list[Any] | None = None
        if live is not None and live.id != version.id:
            try:
                diff = diff_lines(await self.ctx.run(version_diff, self.ctx, live, version))
            except NbappsError as err:
                problems.append(f"diff unavailable: {err.message}")
        actions = allowed_actions(version.state, user.name, user.role, version.submitter)
        self.render_page(
            "submission.html", v=version, app=detail.app, live=live, report=report, diff=diff,
            problems=problems, reviews=self.ctx.catalog.list_reviews(version.id),
            comments=comments_of(self.ctx, version.id),
            can_decide=any(a in actions for a in (Action.APPROVE, Action.REJECT,
                                                  Action.REQUEST_CHANGES)),
            can_withdraw=Action.WITHDRAW in actions,
            own=version.submitter == user.name,
            publisher_report=version.manifest.get("validation") if isinstance(
                version.manifest, dict) else None,
            **NOTICES.get(self.get_argument("done", ""), {}),
        )


class SubmissionNotebookHandler(PageHandler):
    """The submitted notebook as sanitized HTML, for the sandboxed frame of the page above."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    csp = NOTEBOOK_CSP
    frame_options = "SAMEORIGIN"

    async def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))
        html = await self.ctx.run(notebook_html, self.ctx, version)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "private, max-age=3600")
        self.finish(html)


class SubmissionThumbnailHandler(PageHandler):
    """A submission's thumbnail, for reviewers and its author only."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}

    async def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))
        if not version.thumbnail:
            raise NotFound("this submission has no thumbnail")
        await send_thumbnail(self, version.sha256, version.thumbnail)


class DecisionFormHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.REVIEW}

    async def post(self, id: str) -> None:
        user = self.require_user()
        action = parse_decision(self.get_body_argument("decision", ""))
        comment = self.get_body_argument("comment", "")
        await decide(self, user, int(id), action, comment)
        self.redirect(self.url(f"/submissions/{int(id)}?done={action.value}"))


class CommentFormHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.SUBMIT}

    async def post(self, id: str) -> None:
        user = self.require_user()
        await add_comment(self, user, int(id), self.get_body_argument("comment", ""))
        self.redirect(self.url(f"/submissions/{int(id)}?done=comment"))


class WithdrawFormHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.SUBMIT}

    async def post(self, id: str) -> None:
        user = self.require_user()
        await withdraw(self, user, int(id), self.get_body_argument("comment", ""))
        self.redirect(self.url("/my?done=withdraw"))
