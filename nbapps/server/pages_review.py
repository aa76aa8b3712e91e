"""Review pages: queue, my submissions, one submission (check, preview, diff, decisions)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..accounts import Permission
from ..errors import NbappsError, NotFound
from ..review import Action, State, allowed_actions
from .authz import Requirement
from .base import PageHandler
from .notebook_diff import NotebookDiff, diff_notebooks
from .notebook_view import RENDER_VERSION, notebook_html
from .previews import can_preview, preview_path
from .review_data import (
    CheckView,
    cached,
    check_view,
    executed_notebook,
    source_notebook,
)
from .safe_html import STATIC_FRAME_CSP, WIDGET_BUNDLE, frame_csp, has_widgets, with_embed_url
from .submissions import add_comment, comments_of, decide, parse_decision, require_reason, withdraw
from .views import NOTICES, int_arg, send_thumbnail, version_for

if TYPE_CHECKING:
    from ..catalog import VersionInfo
    from .context import ServerContext

#: seconds between reloads of a page whose submission is being checked
REFRESH_SECONDS = 5
#: version states shown in the review queue beside ``submitted`` (when the catalog knows them)
QUEUE_EXTRA_STATES = ("validating", "failed")


# -- status of a submission -----------------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """What the pages say about where a submission stands (version state + the server check)."""

    state: str
    check: str
    label: str
    queue_position: int | None = None
    #: the page reloads itself until the check is over
    pending: bool = False
    #: the check allows approval (who may approve is the review rules' business)
    approvable: bool = True


def submission_status(state: str, check: CheckView) -> Status:
    """One rule for every page: ``state`` a version state value, ``check`` its server check."""
    pending = state == "validating" or check.state in ("queued", "running")
    if check.state == "queued":
        place = check.queue_position
        label = f"checking — place {place} in the queue" if place else "checking — queued"
    elif check.state == "running":
        label = "checking — running"
    elif pending:
        label = "checking"
    elif state == "failed" or (check.state == "failed" and state in ("submitted", "failed")):
        label = "checks failed"
    elif check.state == "error" and state == "submitted":
        label = "check error"
    else:
        label = state.replace("_", " ")
    approvable = not pending and state != "failed" and check.state in ("passed", "none")
    return Status(state=state, check=check.state, label=label,
                  queue_position=check.queue_position if check.state == "queued" else None,
                  pending=pending, approvable=approvable)


def _known_states(names: tuple[str, ...]) -> list[str]:
    known = {s.value for s in State}
    return [n for n in names if n in known]


def _statuses(ctx: ServerContext, versions: list[VersionInfo]) -> dict[int, Status]:
    """Status of each listed version; the check is asked only while it runs (queue place)."""
    out = {}
    for v in versions:
        if v.state.value == "validating":
            out[v.id] = submission_status(v.state.value, check_view(ctx, v))
        else:
            out[v.id] = submission_status(v.state.value, CheckView(state="none"))
    return out


# -- diff -----------------------------------------------------------------------------------------

def _settled(ctx: ServerContext, version: VersionInfo) -> bool:
    """Whether what the diff shows of ``version`` can no longer change (cacheable)."""
    check = check_view(ctx, version)
    if check.state == "passed":
        return executed_notebook(ctx, version) is not None
    return check.done or check.state == "none"


def version_diff(ctx: ServerContext, live: VersionInfo, version: VersionInfo) -> NotebookDiff:
    """The review diff live → ``version``, cached once both executed copies exist."""
    def make() -> NotebookDiff:
        return diff_notebooks(source_notebook(ctx, live), source_notebook(ctx, version),
                              executed_notebook(ctx, live), executed_notebook(ctx, version))

    if not (_settled(ctx, live) and _settled(ctx, version)):
        return make()  # outputs may still come: not cached
    key = (version.sha256, f"diff-{live.sha256}-v{RENDER_VERSION}.json")
    return NotebookDiff.from_json(cached(ctx, key, lambda: make().to_json()))


# -- pages ----------------------------------------------------------------------------------------

class ReviewQueueHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.REVIEW}
    nav = "review"

    async def get(self) -> None:
        page = int_arg(self, "page", 1)
        per = 50
        queue = self.ctx.catalog.list_queue(limit=per + 1, offset=(page - 1) * per)
        items = queue[:per]
        if page == 1:  # submissions being checked or that failed their checks, first page only
            seen = {v.id for v in items}
            for state in _known_states(QUEUE_EXTRA_STATES):
                for v in self.ctx.catalog.list_versions(state=state, limit=per):
                    if v.id not in seen and v.state.value not in ("submitted",):
                        items.append(v)
                        seen.add(v.id)
            items.sort(key=lambda v: v.id)
        statuses = await self.ctx.run(_statuses, self.ctx, items)
        self.render_page("review_queue.html", queue=items, statuses=statuses, page=page,
                         has_next=len(queue) > per,
                         refresh=REFRESH_SECONDS if any(s.pending for s in statuses.values())
                         else None)


class MySubmissionsHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    nav = "my"

    async def get(self) -> None:
        user = self.require_user()
        page = int_arg(self, "page", 1)
        per = 50
        items = self.ctx.catalog.list_versions(submitter=user.name, limit=per + 1,
                                               offset=(page - 1) * per)
        statuses = await self.ctx.run(_statuses, self.ctx, items[:per])
        withdrawable = {v.id for v in items[:per] if Action.WITHDRAW in allowed_actions(
            v.state, user.name, user.role, v.submitter)}
        self.render_page("my_submissions.html", items=items[:per], statuses=statuses, page=page,
                         has_next=len(items) > per, withdrawable=withdrawable,
                         refresh=REFRESH_SECONDS if any(s.pending for s in statuses.values())
                         else None,
                         **NOTICES.get(self.get_argument("done", ""), {}))


class SubmissionPageHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    nav = "review"

    async def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))
        detail = self.ctx.catalog.get_app(version.app_slug)
        live = detail.live
        problems: list[str] = []
        try:
            check = await self.ctx.run(check_view, self.ctx, version)
        except NbappsError as err:
            check = CheckView(state="error")
            problems.append(f"server check unavailable: {err.message}")
        status = submission_status(version.state.value, check)
        diff: NotebookDiff | None = None
        if live is not None and live.id != version.id:
            try:
                diff = await self.ctx.run(version_diff, self.ctx, live, version)
            except NbappsError as err:
                problems.append(f"diff unavailable: {err.message}")
        actions = allowed_actions(version.state, user.name, user.role, version.submitter)
        can = {a.value: a in actions for a in (Action.APPROVE, Action.REQUEST_CHANGES,
                                               Action.REJECT)}
        can["approve"] = can["approve"] and status.approvable
        self.render_page(
            "submission.html", v=version, app=detail.app, live=live, check=check,
            status=status, diff=diff, problems=problems,
            reviews=self.ctx.catalog.list_reviews(version.id),
            comments=comments_of(self.ctx, version.id),
            can_approve=can["approve"], can_request_changes=can["request_changes"],
            can_reject=can["reject"], can_decide=any(can.values()),
            can_withdraw=Action.WITHDRAW in actions,
            own=version.submitter == user.name,
            preview_url=self.url(preview_path(version.id))
            if can_preview(self.ctx, version) else None,
            publisher_report=version.manifest.get("validation") if isinstance(
                version.manifest, dict) else None,
            refresh=REFRESH_SECONDS if status.pending else None,
            **_schedules(self.ctx, version),
            **NOTICES.get(self.get_argument("done", ""), {}),
        )


def _schedules(ctx: ServerContext, version: VersionInfo) -> dict[str, object]:
    """The schedules the reviewer approves with the version (:mod:`.schedule_views`)."""
    from .schedule_views import version_schedules

    schedules, problems = version_schedules(ctx, version)
    return {"schedules": schedules, "schedule_problems": problems}


class SubmissionNotebookHandler(PageHandler):
    """The review preview of a submission, for the sandboxed frame of the page above.

    Without widgets the frame runs no script at all; with widgets only our static widget
    bundle runs, in a sandbox without ``allow-same-origin`` (see
    :func:`.safe_html.frame_csp`)."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    csp = STATIC_FRAME_CSP
    frame_options = "SAMEORIGIN"

    async def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))
        html = await self.ctx.run(notebook_html, self.ctx, version)
        if has_widgets(html):
            bundle = self.static_url(WIDGET_BUNDLE)
            folder = bundle.split("?", 1)[0].rsplit("/", 1)[0] + "/"
            origin = f"{self.request.protocol}://{self.request.host}"
            self.set_header("Content-Security-Policy", frame_csp(origin + folder))
            html = with_embed_url(html, bundle)
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.set_header("Cache-Control", "private, no-cache")
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
    """The decision form. *Reject* and *Request changes* need a comment (NBA350); *Reject*
    asks for confirmation first: without ``confirm=yes`` it answers with a confirmation page
    (a plain form, no script) instead of deciding."""

    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.REVIEW}

    async def post(self, id: str) -> None:
        user = self.require_user()
        action = parse_decision(self.get_body_argument("decision", ""))
        comment = require_reason(action, self.get_body_argument("comment", ""))
        if action is Action.REJECT and self.get_body_argument("confirm", "") != "yes":
            version = version_for(self.ctx, user, int(id))
            self.render_page("submission_reject.html", v=version, comment=comment)
            return
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


__all__ = ["Status", "submission_status", "version_diff"]
