"""The one route table: every URL of the server, its handler and (for the API) its docs.

Paths are written as templates (``/api/apps/{slug}``); :func:`tornado_rules` turns them into
tornado patterns and :mod:`nbapps.server.api_meta` turns the API ones into the OpenAPI document.
Permissions are not repeated here: each handler declares them (``permissions``), and the
authorization tests enumerate this table to check that every route and method is covered.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tornado.web import RedirectHandler, RequestHandler

#: regular expressions of the path parameters used in templates
PATH_PARAMS: Mapping[str, str] = {
    "slug": r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}",
    "id": r"[0-9]{1,18}",
    "name": r"[^/]{1,64}",
    "prefix": r"[A-Za-z0-9_-]{1,32}",
    "path": r".*",
}

_PARAM = re.compile(r"\{([a-z_]+)\}")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # fits a 64-bit column
_BOOLEAN = frozenset({"1", "0", "true", "false", "yes", "no"})


@dataclass(frozen=True)
class Param:
    name: str
    type: str = "string"  # JSON schema type
    description: str = ""
    required: bool = False
    #: the only values allowed (an enumeration), empty: any
    enum: tuple[str, ...] = ()

    def schema(self) -> dict[str, Any]:
        """JSON schema of the value (OpenAPI)."""
        out: dict[str, Any] = {"type": self.type}
        if self.enum:
            out["enum"] = list(self.enum)
        return out

    def problem(self, value: str) -> str | None:
        """Why ``value`` does not fit this parameter (None: it fits; empty means absent).
        The server answers such a value with NBA331 before the handler sees it."""
        if not value:
            return None
        if self.enum and value not in self.enum:
            return f"{self.name} must be one of: {', '.join(self.enum)}"
        if self.type == "integer" and not _INTEGER.fullmatch(value):
            return f"{self.name} must be a whole number"
        if self.type == "boolean" and value.lower() not in _BOOLEAN:
            return f"{self.name} must be true or false"
        return None


@dataclass(frozen=True)
class Op:
    """OpenAPI facts of one API method."""

    summary: str
    query: tuple[Param, ...] = ()
    #: request body media type ("application/json", "application/gzip") and its schema
    body: str | None = None
    body_schema: Mapping[str, Any] | None = None
    ok: int = 200
    #: response media type of success
    returns: str = "application/json"


@dataclass(frozen=True)
class Route:
    path: str
    handler: type[RequestHandler]
    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_api(self) -> bool:
        return self.path.startswith("/api/")

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def pattern(self) -> str:
        def repl(m: re.Match[str]) -> str:
            return f"(?P<{m.group(1)}>{PATH_PARAMS[m.group(1)]})"

        return _PARAM.sub(repl, re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}")) + "$"

    def url(self, **values: Any) -> str:
        return _PARAM.sub(lambda m: str(values[m.group(1)]), self.path)

    @property
    def methods(self) -> list[str]:
        perms = getattr(self.handler, "permissions", {})
        return [m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE") if m in perms]


def route_table(runtime: Any = None) -> list[Route]:
    """All routes, in matching order. ``runtime`` may supply the ``/apps/{slug}/{path}`` handler."""
    from . import (
        api_apps,
        api_meta,
        api_runs,
        api_schedules,
        api_submissions,
        api_users,
        app_frame,
        hub_auth,
        pages_account,
        pages_admin,
        pages_apps,
        pages_auth,
        pages_review,
        pages_schedules,
        previews,
        readiness,
        snapshots,
    )

    app_handler = getattr(runtime, "handler_class", None) or pages_apps.AppRuntimeHandler
    return [
        # pages
        Route("/", pages_apps.GalleryHandler, "gallery"),
        Route("/login", pages_auth.LoginHandler, "login"),
        Route("/logout", pages_auth.LogoutHandler, "logout"),
        Route("/hub-login", hub_auth.HubLoginHandler, "hub-login"),
        Route("/oauth_callback", hub_auth.HubCallbackHandler, "hub-oauth-callback"),
        Route("/app/{slug}", pages_apps.AppPageHandler, "app"),
        Route("/app/{slug}/thumbnail", pages_apps.AppThumbnailHandler, "app-thumbnail"),
        Route("/app/{slug}/rollback", pages_apps.RollbackFormHandler, "app-rollback"),
        Route("/app/{slug}/schedules/{name}", pages_schedules.ScheduleFormHandler,
              "app-schedule"),
        Route("/app/{slug}/open", app_frame.AppFrameHandler, "app-open"),
        Route("/app/{slug}/live", app_frame.AppLiveFrameHandler, "app-live"),
        Route("/app/{slug}/snapshot", snapshots.SnapshotHandler, "app-snapshot"),
        Route("/app/{slug}/snapshot/{id}/report.html", snapshots.SnapshotReportHandler,
              "app-snapshot-report"),
        Route("/apps/{slug}/{path}", app_handler, "app-runtime"),
        Route("/review", pages_review.ReviewQueueHandler, "review-queue"),
        Route("/my", pages_review.MySubmissionsHandler, "my-submissions"),
        Route("/submissions/{id}", pages_review.SubmissionPageHandler, "submission"),
        Route("/submissions/{id}/notebook", pages_review.SubmissionNotebookHandler,
              "submission-notebook"),
        Route("/submissions/{id}/thumbnail", pages_review.SubmissionThumbnailHandler,
              "submission-thumbnail"),
        Route("/submissions/{id}/decision", pages_review.DecisionFormHandler,
              "submission-decision"),
        Route("/submissions/{id}/comment", pages_review.CommentFormHandler, "submission-comment"),
        Route("/submissions/{id}/withdraw", pages_review.WithdrawFormHandler,
              "submission-withdraw"),
        Route("/submissions/{id}/preview", previews.PreviewFrameHandler, "submission-preview"),
        Route("/account", pages_account.AccountHandler, "account"),
        Route("/account/tokens", pages_account.TokenCreateHandler, "account-token-create"),
        Route("/account/tokens/{prefix}/revoke", pages_account.TokenRevokeHandler,
              "account-token-revoke"),
        Route("/admin/users", pages_admin.UsersHandler, "admin-users"),
        Route("/admin/users/{name}", pages_admin.UserUpdateHandler, "admin-user-update"),
        Route("/admin/users/{name}/tokens", pages_admin.UserTokenHandler, "admin-user-token"),
        Route("/admin/users/{name}/tokens/{prefix}/revoke", pages_admin.UserTokenRevokeHandler,
              "admin-user-token-revoke"),
        Route("/admin/audit", pages_admin.AuditHandler, "admin-audit"),
        Route("/admin/audit.jsonl", pages_admin.AuditExportHandler, "admin-audit-export"),
        # JSON API
        Route("/api/openapi.json", api_meta.OpenAPIHandler, "api-openapi"),
        Route("/api/me", api_users.MeHandler, "api-me"),
        Route("/api/me/tokens", api_users.MyTokensHandler, "api-my-tokens"),
        Route("/api/me/tokens/{prefix}", api_users.MyTokenHandler, "api-my-token"),
        Route("/api/apps", api_apps.AppsHandler, "api-apps"),
        Route("/api/tags", api_apps.TagsHandler, "api-tags"),
        Route("/api/categories", api_apps.CategoriesHandler, "api-categories"),
        Route("/api/apps/{slug}", api_apps.AppHandler, "api-app"),
        Route("/api/apps/{slug}/rollback", api_apps.RollbackHandler, "api-app-rollback"),
        Route("/api/apps/{slug}/status", app_frame.AppStatusHandler, "api-app-status"),
        Route("/api/apps/{slug}/runs", api_runs.AppRunsHandler, "api-app-runs"),
        Route("/api/apps/{slug}/schedules", api_schedules.AppSchedulesHandler,
              "api-app-schedules"),
        Route("/api/apps/{slug}/schedules/{name}", api_schedules.ScheduleHandler,
              "api-app-schedule"),
        Route("/api/runs/{id}", api_runs.RunHandler, "api-run"),
        Route("/api/runs/{id}/cancel", api_runs.RunCancelHandler, "api-run-cancel"),
        Route("/api/runs/{id}/{path}", api_runs.RunArtifactHandler, "api-run-artifact"),
        Route("/api/submissions", api_submissions.SubmissionsHandler, "api-submissions"),
        Route("/api/submissions/{id}", api_submissions.SubmissionHandler, "api-submission"),
        Route("/api/submissions/{id}/decision", api_submissions.DecisionHandler,
              "api-submission-decision"),
        Route("/api/submissions/{id}/withdraw", api_submissions.WithdrawHandler,
              "api-submission-withdraw"),
        Route("/api/submissions/{id}/comments", api_submissions.CommentsHandler,
              "api-submission-comments"),
        Route("/api/submissions/{id}/check", api_submissions.CheckHandler,
              "api-submission-check"),
        Route("/api/users", api_users.UsersHandler, "api-users"),
        Route("/api/users/{name}", api_users.UserHandler, "api-user"),
        Route("/api/users/{name}/tokens", api_users.UserTokensHandler, "api-user-tokens"),
        Route("/api/audit", api_users.AuditHandler, "api-audit"),
        # operations
        Route("/healthz", api_meta.HealthHandler, "health"),
        Route("/readyz", readiness.ReadyHandler, "ready"),
        Route("/metrics", api_meta.MetricsHandler, "metrics"),
    ]


def normalize_base_url(value: str) -> str:
    """``team/gallery`` → ``/team/gallery/``; refuses anything but a plain URL path."""
    text = (value or "/").strip()
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or parts.query or parts.fragment or "\\" in text \
            or text.startswith("//"):
        raise ValueError(f"{value!r} is not a URL path (write it like /team/gallery/)")
    segments = [seg for seg in text.split("/") if seg]
    if any(seg in (".", "..") or not _SEGMENT.fullmatch(seg) for seg in segments):
        raise ValueError(f"{value!r}: use letters, digits and - _ . ~ between the slashes")
    return "/" + "".join(f"{seg}/" for seg in segments)


def tornado_rules(routes: list[Route], base_url: str = "/"
                  ) -> list[tuple[str, Any, dict[str, Any], str | None]]:
    """Tornado rules of ``routes`` under ``base_url`` (plus ``<base>`` without its last slash
    redirecting to ``<base>/``, the address people type)."""
    prefix = re.escape(base_url.rstrip("/"))
    rules: list[tuple[str, Any, dict[str, Any], str | None]] = [
        (prefix + r.pattern(), r.handler, {"route_name": r.name, **r.kwargs}, r.name)
        for r in routes]
    if base_url != "/":
        rules.append((prefix + "$", RedirectHandler, {"url": base_url}, None))
    return rules
