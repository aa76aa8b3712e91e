"""Live previews for reviewers: a submitted version running as an app before the decision.

What a preview is (its runtime key ``~v<id>``, which versions may run) is :mod:`nbapps.previews`.
This module is the gallery's side of it:

- ``GET <base>submissions/<id>/preview?<params>`` (:class:`PreviewFrameHandler`): a gallery page
  with a banner "Preview of version N — not approved", the parameter form of the version's own
  contract and the preview in a sandboxed iframe, ``<base>apps/~v<id>/~t/<ticket>/?<params>``,
  served by the app proxy like any app (same CSP sandbox, parameter check, kernel message
  filter). Opening it starts the preview's runner on demand (the proxy's first page request).
- :func:`authorize_runtime`: the app proxy's decision for every request. App slugs go to
  :func:`~.pages_apps.authorize_app`; preview keys to :func:`authorize_preview`: only reviewers,
  admins and the version's submitter (the viewer a ticket names, or the request's token or
  session), and only while the version may run (checked on every request, from a cache the
  gallery drops on every catalog change). A decided or withdrawn version answers 410 (NBA360),
  and its runner is stopped if it still ran.
- :func:`stop_preview`: called where decisions and withdrawals are made (:mod:`.submissions`)
  and where a check is queued again (:mod:`.api_submissions`), so the runner stops right after
  them; an idle preview stops after the supervisor's ``idle_timeout`` like any app.
- Previews count no app views (the usage recorder never sees them) and show in metrics under
  the label ``~preview``.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from tornado.web import RequestHandler

from ..accounts import Permission
from ..errors import NotFound
from ..previews import (
    check_previewable,
    preview_key,
    preview_version,
    previewable,
)
from .app_frame import asked_values, frame_url_of
from .app_isolation import IFRAME_SANDBOX
from .app_tickets import SEGMENT, AppTickets
from .authz import Requirement
from .base import PageHandler
from .context import ServerContext, ServerOptions
from .pages_apps import authorize_app, proxy_viewer, send_page_to_login, ticket_session
from .views import can_see_version, contract_of, version_for

log = logging.getLogger("nbapps.server.previews")

#: the metrics label of every preview (one label, not one per version)
METRICS_LABEL = "~preview"


def preview_path(version_id: int) -> str:
    """The gallery page that frames the preview of ``version_id``."""
    return f"/submissions/{int(version_id)}/preview"


def _version(ctx: Any, version_id: int) -> Any:
    """The version (cached like the app proxy's other lookups; dropped on catalog changes)."""
    def load() -> Any:
        try:
            return ctx.catalog.get_version(version_id)
        except NotFound:
            return None

    version = ctx.cache.get(("preview-version", version_id), load)
    if version is None:
        raise NotFound(f"no submission {version_id}")
    return version


def stop_preview(ctx: Any, version_id: int) -> None:
    """Stop the preview runner of ``version_id`` if it runs (in the background)."""
    retire = getattr(ctx.runtime, "retire", None)
    if retire is None:
        return
    key = preview_key(version_id)
    knows = getattr(ctx.runtime, "knows", None)
    if callable(knows) and not knows(key):
        return
    task = asyncio.ensure_future(retire(key))
    task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stopping a preview failed: %s", task.exception())


def authorize_preview(handler: RequestHandler, key: str) -> bool:
    """The app proxy's decision for a request to the preview ``key`` (see the module docstring).

    Raises NotFound (no such version), PreviewEnded (410) or PreviewUnavailable (409); returns
    False for anyone else than reviewers and the submitter (the proxy answers 403).
    """
    ctx = handler.settings["nbapps"]
    version_id = preview_version(key)
    if version_id is None:
        raise NotFound(f"no preview {key!r}")
    user = proxy_viewer(handler)
    if user is None:
        send_page_to_login(handler)
        return False
    version = _version(ctx, version_id)
    if not can_see_version(ctx, user, version):
        return False
    if not previewable(version):
        stop_preview(ctx, version_id)
        check_previewable(version)  # raises, with the reason
    handler.app_viewer = user  # type: ignore[attr-defined]
    return True


def authorize_runtime(handler: RequestHandler, key: str) -> bool:
    """``authorize`` of the app proxy: apps by slug, previews by their key."""
    if preview_version(key) is not None:
        return authorize_preview(handler, key)
    return authorize_app(handler, key)


def runtime_frame_url(options: ServerOptions) -> Callable[[str, str], str]:
    """``frame_url`` of the app proxy: the app frame, or the preview frame for a preview key."""
    app_frame = frame_url_of(options)

    def frame_url(key: str, query: str) -> str:
        version_id = preview_version(key)
        if version_id is None:
            return app_frame(key, query)
        return options.url(preview_path(version_id)) + (f"?{query}" if query else "")

    return frame_url


def runtime_observer(observe: Callable[[str, str, int, float], None] | None, ctx: ServerContext
                     ) -> Callable[[str, str, int, float], None] | None:
    """The proxy's ``observe``: previews are no app views (only metrics, under one label)."""
    if observe is None:
        return None

    def observer(key: str, kind: str, status: int, seconds: float) -> None:
        if preview_version(key) is None:
            observe(key, kind, status, seconds)
        elif ctx.metrics is not None:
            ctx.metrics.observe_app(METRICS_LABEL, kind, status, seconds)

    return observer


def can_preview(ctx: ServerContext, version: Any) -> bool:
    """Whether the submission page offers *Open live preview* (its viewers may see it)."""
    return ctx.runtime is not None and hasattr(ctx.runtime, "retire") and previewable(version)


class PreviewFrameHandler(PageHandler):
    """``<base>submissions/<id>/preview``: the preview of a submitted version in a frame."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.SUBMIT}
    nav = "review"

    def get(self, id: str) -> None:
        user = self.require_user()
        version = version_for(self.ctx, user, int(id))  # reviewers and the submitter only
        check_previewable(version)
        if self.ctx.runtime is None or not hasattr(self.ctx.runtime, "retire"):
            raise NotFound("this gallery runs no apps: previews are not available")
        asked = asked_values(self, contract_of(version.manifest))
        problems, suffix = asked.problems, asked.suffix
        key = preview_key(version.id)
        tickets: AppTickets = self.settings["nbapps_tickets"]
        # bound to the reviewer's login session, like a viewer's app ticket
        ticket = tickets.issue(key, user.name, user.id,
                               session_hash=ticket_session(self, user))
        if problems:
            self.set_status(400)
        self.render_page(
            "preview_frame.html", v=version, fields=asked.fields,
            problems=problems,
            app_src=None if problems else self.url(f"/apps/{key}/{SEGMENT}/{ticket}/") + suffix,
            form_action=self.url(preview_path(version.id)),
            submission_url=self.url(f"/submissions/{version.id}"),
            sandbox=IFRAME_SANDBOX,
        )


__all__ = ["METRICS_LABEL", "PreviewFrameHandler", "authorize_preview", "authorize_runtime",
           "can_preview", "preview_path", "runtime_frame_url", "runtime_observer",
           "stop_preview"]
