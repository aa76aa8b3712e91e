"""JSON API of submissions: upload, list, show, decide, withdraw, comment, re-check.

Every submission carries ``check``, the gallery's own check run of its stored source (DESIGN.md
decision 7), as :data:`CHECK_DOC` describes.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from tornado import web

from ..accounts import Permission
from ..errors import TooLarge, UsageError
from ..review import State
from .authz import Requirement
from .base import APIHandler
from .previews import stop_preview
from .review_data import check_dict, check_view, view_of
from .routes import Op, Param
from .submissions import (
    add_comment,
    comments_of,
    decide,
    parse_decision,
    withdraw,
)
from .uploads import accept_upload
from .views import int_arg, is_reviewer, version_for

#: JSON bodies of the non-upload API are small
MAX_JSON_BODY = 1024 * 1024


#: the ``check`` object of every submission in this API (OpenAPI summaries quote it)
CHECK_DOC = (
    "Each submission has `check`, the gallery's own run of its stored source: "
    '`{"state": "none|queued|running|passed|failed|error", "queue_position": int|null '
    '(1 = next, while queued), "findings": [{"code", "severity", "message", "cell" (1-based) '
    '|null, "cell_line", "hint"}], "runs": [{"label", "parameters", "ok", "seconds", "cells": '
    '[{"cell" (1-based), "first_line", "seconds"}]}], "started_at", "finished_at"}`. '
    "A new submission is `validating` until its check ends; then `submitted` (passed: ready "
    "for review) or `failed` (error findings: it cannot be approved). `none`: a version "
    "stored by an earlier nbapps, not checked yet."
)


def submission_url(handler: APIHandler, version_id: int) -> str:
    base = handler.gallery_url()
    return f"{base}/submissions/{version_id}"


@web.stream_request_body
class SubmissionsHandler(APIHandler):
    """``GET``: submissions visible to the user; ``POST``: upload a bundle (tar.gz body).

    The body is streamed to a spool file: a ``Content-Length`` over the limit is refused with 413
    before any of the body is read, and a chunked body is cut off at the limit.
    """

    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.SUBMIT, "POST": Permission.SUBMIT,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("List submissions: reviewers see all, analysts their own.", query=(
            Param("state", description="submitted | approved | changes_requested | rejected | "
                  "withdrawn", enum=tuple(s.value for s in State)),
            Param("mine", "boolean", "only my own submissions"),
            Param("app", description="only versions of this app (slug)"),
            Param("page", "integer"), Param("per_page", "integer"),
        )),
        "POST": Op("Submit an app: a tar.gz holding `app.ipynb` and the data files it "
                   "declares (what `nbapps publish` sends; a whole `nbapps bundle` archive is "
                   "accepted too, its other files ignored). Answers 201 at once with state "
                   "`validating` and the queued `check`; identical content returns the "
                   "existing submission (200). A full check queue: 429 NBA322. " + CHECK_DOC,
                   query=(Param("slug",
                                description="app slug (default: from the notebook's title)"),),
                   body="application/gzip", ok=201),
    }

    _spool: Any = None
    _received = 0

    async def prepare(self) -> None:
        await super().prepare()
        if self.request.method != "POST":
            return None
        limit = self.ctx.options.max_upload_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                raise UsageError("invalid Content-Length", code="NBA331") from None
            if declared > limit:
                raise TooLarge(f"bundle of {declared} bytes is over the upload limit of "
                               f"{limit} bytes")
        # A chunked body over the limit is read on (and dropped) up to a margin so the client
        # gets a clean 413; past the margin tornado closes the connection.
        margin = min(limit, 16 * 1024 * 1024)
        self.request.connection.set_max_body_size(limit + margin)  # type: ignore[union-attr]
        self.ctx.upload_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=self.ctx.upload_dir)
        self._spool = (os.fdopen(fd, "wb", buffering=0), Path(name))
        return None

    def data_received(self, chunk: bytes) -> None:
        self._received += len(chunk)
        if self._spool is None:
            return
        if self._received > self.ctx.options.max_upload_bytes:
            self._discard()  # keep reading (and dropping) the rest; post() answers 413
            return
        self._spool[0].write(chunk)

    def _discard(self) -> None:
        if self._spool is not None:
            f, path = self._spool
            self._spool = None
            f.close()
            path.unlink(missing_ok=True)

    def on_finish(self) -> None:
        self._discard()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._discard()

    async def post(self) -> None:
        user = self.require_user()
        if self._received > self.ctx.options.max_upload_bytes:
            raise TooLarge(f"bundle over the upload limit of "
                           f"{self.ctx.options.max_upload_bytes} bytes")
        if self._spool is None:
            raise UsageError("upload interrupted", code="NBA331")
        f, path = self._spool
        f.close()
        slug = self.get_query_argument("slug", None) or None
        result = await self.ctx.run(accept_upload, self.ctx, user, path, slug=slug,
                                    ip=self.client_ip())
        self.ctx.changed()
        v = result.version
        check = await self.ctx.run(check_view, self.ctx, v)
        body = {"id": v.id, "url": submission_url(self, v.id), "state": v.state.value,
                "created": result.created, "app": v.app_slug, "number": v.number,
                "sha256": v.sha256, "check": check_dict(check)}
        self.write_json(body, status=201 if result.created else 200)

    def get(self) -> None:
        user = self.require_user()
        state = self.get_argument("state", None) or None
        mine = self.get_argument("mine", "") in ("1", "true", "yes")
        app = self.get_argument("app", None) or None
        page = int_arg(self, "page", 1)
        per = int_arg(self, "per_page", 50, hi=200)
        submitter = user.name if (mine or not is_reviewer(self.ctx, user)) else None
        items = self.ctx.catalog.list_versions(state=state, submitter=submitter, app_slug=app,
                                               limit=per, offset=(page - 1) * per)
        checks = self.ctx.catalog.latest_jobs([v.id for v in items])
        self.write_json({"items": [{**v.to_dict(), "check": check_dict(view_of(checks.get(v.id)))}
                                   for v in items], "page": page, "per_page": per})


class _JSONPost(APIHandler):
    async def prepare(self) -> None:
        await super().prepare()
        if len(self.request.body or b"") > MAX_JSON_BODY:
            raise TooLarge("request body too large")
        return None


class SubmissionHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("One submission with its manifest (derived by the gallery from the source; "
                  "a client's own validation summary only under `client_claim`), `check`, "
                  "review history and comments (reviewers and its author). " + CHECK_DOC),
    }

    def get(self, id: str) -> None:
        user = self.require_user()
        v = version_for(self.ctx, user, int(id))
        check = check_view(self.ctx, v)
        if v.state == State.VALIDATING.value and check.state in ("passed", "failed", "error"):
            # the verdict moves the version in the same transaction, between our two reads:
            # read the version again, so a client never sees a verdict beside "validating"
            v = version_for(self.ctx, user, int(id))
        out = v.to_dict(with_manifest=True)
        out["url"] = submission_url(self, v.id)
        out["check"] = check_dict(check)
        out["reviews"] = [r.to_dict() for r in self.ctx.catalog.list_reviews(v.id)]
        out["comments"] = [{**c, "at": c["at"].isoformat()} for c in comments_of(self.ctx, v.id)]
        self.write_json(out)


class DecisionHandler(_JSONPost):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.REVIEW}
    docs: ClassVar[dict[str, Op]] = {
        "POST": Op("Approve, request changes or reject a submitted version. Four-eyes: never "
                   "on one's own submission (403 NBA304); a concurrent decision loses with "
                   "409.", body="application/json", body_schema={
                       "type": "object", "required": ["decision"],
                       "properties": {"decision": {"type": "string", "enum": [
                           "approve", "request_changes", "reject"]},
                           "comment": {"type": "string"}}}),
    }

    async def post(self, id: str) -> None:
        user = self.require_user()
        body = self.json_body()
        action = parse_decision(body.get("decision"))
        v = await decide(self, user, int(id), action, body.get("comment"))
        out = v.to_dict()
        out["url"] = submission_url(self, v.id)
        self.write_json(out)


class WithdrawHandler(_JSONPost):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": Permission.SUBMIT}
    docs: ClassVar[dict[str, Op]] = {
        "POST": Op("Withdraw one's own submission (submitted or changes requested).",
                   body="application/json",
                   body_schema={"type": "object", "properties": {"comment": {"type": "string"}}}),
    }

    async def post(self, id: str) -> None:
        user = self.require_user()
        body = self.json_body()
        v = await withdraw(self, user, int(id), body.get("comment"))
        self.write_json(v.to_dict())


class CommentsHandler(_JSONPost):
    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.SUBMIT, "POST": Permission.SUBMIT,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Comments on a submission, oldest first."),
        "POST": Op("Comment on a submission (reviewers and its author).",
                   body="application/json", ok=201,
                   body_schema={"type": "object", "required": ["comment"],
                                "properties": {"comment": {"type": "string"}}}),
    }

    def get(self, id: str) -> None:
        user = self.require_user()
        v = version_for(self.ctx, user, int(id))
        self.write_json({"items": [{**c, "at": c["at"].isoformat()}
                                   for c in comments_of(self.ctx, v.id)]})

    async def post(self, id: str) -> None:
        user = self.require_user()
        body = self.json_body()
        out = await add_comment(self, user, int(id), body.get("comment"))
        out["at"] = out["at"].isoformat()
        self.write_json(out, status=201)


class CheckHandler(_JSONPost):
    """The gallery's check of one submission: read it, or queue it again."""

    permissions: ClassVar[dict[str, Requirement]] = {
        "GET": Permission.SUBMIT, "POST": Permission.REVIEW,
    }
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("The `check` of a submission (reviewers and its author). " + CHECK_DOC),
        "POST": Op("Queue the check of a `failed` or `submitted` version again (reviewers and "
                   "admins); it waits in `validating` for the new verdict. 409 NBA305 while it "
                   "is being checked; 429 NBA322 when the queue is full.",
                   body="application/json", ok=202,
                   body_schema={"type": "object", "properties": {}}),
    }

    def get(self, id: str) -> None:
        user = self.require_user()
        v = version_for(self.ctx, user, int(id))
        self.write_json(check_dict(check_view(self.ctx, v)))

    async def post(self, id: str) -> None:
        user = self.require_user()
        self.json_body()
        checks = self.ctx.checks
        v = await self.ctx.run(self.ctx.catalog.recheck, int(id), user.name,
                               max_queued=checks.queue_max if checks is not None else None,
                               ip=self.client_ip())
        self.ctx.changed()
        stop_preview(self.ctx, v.id)  # back to "validating": no preview until it passes again
        if checks is not None:
            checks.notify()
        out = v.to_dict()
        out["url"] = submission_url(self, v.id)
        out["check"] = check_dict(await self.ctx.run(check_view, self.ctx, v))
        self.write_json(out, status=202)
