"""JSON API of runs (issue 14): run an approved app with parameters, follow it, get its outputs.

* ``POST /api/apps/<slug>/runs`` ``{"parameters": {...}}`` or ``{"batch": [{...}, ...]}``,
  optional ``"version": N`` (a version number of the app; default: the live one) → 202 with
  ``{"runs": [...], "batch": id|null}``. Parameter values are checked against the version's
  contract before anything is queued (NBA101-103, every bad value listed), the version must be
  approved (NBA371), the queue must have room (NBA370, 429 with ``Retry-After``), and the
  person asking may have at most ``run_user_max`` runs queued or running (NBA383, 429).
* ``GET /api/apps/<slug>/runs`` the app's runs, newest first (``origin``, ``batch``, ``limit``).
* ``GET /api/runs/<id>`` one run: state, timings, queue position, findings, result, artifact URLs
  (``artifact_urls``; ``on_request`` names those made at their first download: ``report.pdf``
  until someone fetched it).
* ``GET /api/runs/<id>/<artifact>`` ``executed.ipynb``, ``report.html``, ``report.pdf``,
  ``result.json`` or a declared output file. ``report.pdf`` is printed on its first download
  (:mod:`nbapps.runs.pdf`: one print however many ask at once; NBA386-388 when it fails, and
  the next request tries again), then kept. Everything is sent as an attachment, except
  ``report.html`` without ``?download=1``: it is shown inline, with the review preview's
  sandbox CSP (an opaque origin; the only script allowed is the gallery's static widget bundle),
  because it is app output and must not run with the gallery's origin.
* ``DELETE /api/runs/<id>`` or ``POST /api/runs/<id>/cancel``: the run's owner or an admin.

Who may see and start runs: whoever may open the app (:func:`may_open`: the ``open_apps``
permission, and the app visible to them, the rule of the app pages), viewers included. A run's
``findings`` and ``details`` (tracebacks, cell sources, notes: code and data of the notebook) are
shown only to its owner and to those who see a broken app's findings (the app's analysts,
reviewers, admins: :func:`~.schedule_views.may_see_findings`, the one rule); everyone else gets
them empty with ``"findings_hidden": true`` (state, times, parameters, result and the other
artifacts stay). The same rule guards ``executed.ipynb``: it holds the app's source and, for a
failed run, the traceback, so for everyone else it is left out of the artifacts and refused
(403, NBA301), like the app pages that never serve a notebook's code to a viewer.
"""
from __future__ import annotations

import mimetypes
from typing import Any, ClassVar

from ..catalog.runs import MAX_BATCH, RunInfo
from ..errors import NbappsError, NotFound, PermissionDenied, UsageError
from ..runs.report import has_widgets, with_embed_url
from ..runs.worker import PDF, REPORT
from .authz import OPEN_APPS, Requirement
from .base import APIHandler
from .identity import WebUser
from .routes import Op, Param
from .safe_html import STATIC_FRAME_CSP, WIDGET_BUNDLE, frame_csp
from .schedule_views import may_see_findings
from .views import app_visible_to

RUN_BODY_SCHEMA = {
    "type": "object",
    "properties": {
        "parameters": {"type": "object", "description": "parameter name -> value (JSON "
                       "values; a string for a typed parameter is read like a URL value)"},
        "batch": {"type": "array", "items": {"type": "object"}, "maxItems": MAX_BATCH,
                  "description": "several parameter sets, one run each"},
        "version": {"type": "integer", "minimum": 1,
                    "description": "an approved version number (default: the live one)"},
    },
    "additionalProperties": False,
}
_TYPES = {".ipynb": "application/x-ipynb+json", ".json": "application/json",
          ".html": "text/html; charset=UTF-8", ".pdf": "application/pdf",
          ".csv": "text/csv; charset=UTF-8", ".txt": "text/plain; charset=UTF-8",
          ".md": "text/markdown; charset=UTF-8"}
#: artifacts only those who see the run's findings may download (the app's code is in them)
PRIVATE_ARTIFACTS = frozenset({"executed.ipynb"})


def content_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def may_open(handler: Any, user: WebUser | None, slug: str) -> Any:
    """The app's catalog entry; NotFound unless ``user`` may open app ``slug`` (the same rule
    as the app pages). ``handler``: any gallery handler (``.ctx``)."""
    ctx = handler.ctx
    if not ctx.authorizer.is_allowed(user, OPEN_APPS):
        raise NotFound(f"no app {slug!r}")
    detail = ctx.catalog.get_app(slug)
    if not app_visible_to(ctx, user, detail):
        raise NotFound(f"no app {slug!r}")
    return detail


def may_see_run_findings(ctx: Any, user: WebUser | None, detail: Any, run: RunInfo) -> bool:
    """Whether ``user`` sees the findings and details of ``run`` (of app ``detail``): its
    owner, and whoever sees a broken app's findings (:func:`may_see_findings`)."""
    if user is None:
        return False
    return (run.owner is not None and run.owner == user.name) or \
        may_see_findings(ctx, user, detail)


def run_json(handler: Any, run: RunInfo, *, findings: bool = True) -> dict[str, Any]:
    """A run as the API gives it; ``findings=False``: without its findings and details (for
    those :func:`may_see_run_findings` refuses)."""
    out = run.to_dict()
    out["findings_hidden"] = not findings
    names = sorted(run.artifacts)
    if not findings:
        out["findings"] = []
        out["details"] = {}
        names = [n for n in names if n not in PRIVATE_ARTIFACTS]
        out["artifacts"] = {n: run.artifacts[n] for n in names}
    out["on_request"] = []
    if PDF not in names and _pdfs(handler) is not None and _pdfs(handler).offered(run):
        names = sorted([*names, PDF])
        out["on_request"] = [PDF]
    out["url"] = handler.url(f"/api/runs/{run.id}")
    out["artifact_urls"] = {name: handler.url(f"/api/runs/{run.id}/{name}") for name in names}
    return out


def _pdfs(handler: Any) -> Any:
    """The gallery's run PDFs (:class:`nbapps.runs.pdf.RunPdfs`; None without a run pool)."""
    return getattr(getattr(handler.ctx, "runs", None), "pdfs", None)


def _queue_limits(handler: APIHandler) -> dict[str, int | None]:
    """The run pool's ``queue_max`` and ``user_max`` (none without a pool)."""
    pool = getattr(handler.ctx, "runs", None)
    if pool is None:
        return {"queue_max": None, "user_max": None}
    return {"queue_max": pool.settings.queue_max, "user_max": pool.settings.user_max}


class AppRunsHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS, "POST": OPEN_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("Runs of an app, newest first (whoever may open the app).", query=(
            Param("origin", description="api | schedule | snapshot",
                  enum=("api", "schedule", "snapshot")),
            Param("batch", description="only the runs of this batch"),
            Param("limit", "integer", "1-1000, default 50"))),
        "POST": Op("Run the app's live (or a given approved) version with parameter values, "
                   "one run per set of a batch; 202 with the queued runs.",
                   body="application/json", body_schema=RUN_BODY_SCHEMA, ok=202),
    }

    async def get(self, slug: str) -> None:
        user = self.require_user()
        detail = await self.ctx.run(may_open, self, user, slug)
        limit = int(self.get_argument("limit", "50") or 50)
        runs = await self.ctx.run(self.ctx.catalog.list_runs, slug,
                                  origin=self.get_argument("origin", None),
                                  batch=self.get_argument("batch", None), limit=limit)
        self.write_json({"items": [
            run_json(self, r, findings=may_see_run_findings(self.ctx, user, detail, r))
            for r in runs]})

    async def post(self, slug: str) -> None:
        user = self.require_user()
        await self.ctx.run(may_open, self, user, slug)
        body = self.json_body()
        unknown = sorted(set(body) - set(RUN_BODY_SCHEMA["properties"]))
        if unknown:
            raise UsageError(f"unknown field(s) {', '.join(unknown)}; known: parameters, "
                             "batch, version", code="NBA378")
        if "batch" in body and "parameters" in body:
            raise UsageError("give either parameters or batch", code="NBA378")
        if "batch" in body:
            sets = body["batch"]
            if not isinstance(sets, list) or not sets or len(sets) > MAX_BATCH:
                raise UsageError(f"batch must be a list of 1 to {MAX_BATCH} parameter sets",
                                 code="NBA378")
        else:
            params = body.get("parameters", {})
            if not isinstance(params, dict):
                raise UsageError("parameters must be an object of name: value", code="NBA378")
            sets = [params]
        number = body.get("version")
        if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
            raise UsageError("version must be a version number", code="NBA378")
        version_id = None
        if number is not None:
            version_id = await self.ctx.run(self.ctx.catalog.app_version_for_run, slug, number)
        runs = await self.ctx.run(self.ctx.catalog.queue_runs, slug, sets, user=user.name,
                                  version_id=version_id, origin="api",
                                  **_queue_limits(self), ip=self.client_ip())
        pool = getattr(self.ctx, "runs", None)
        if pool is not None:
            pool.notify()
        self.write_json({"runs": [run_json(self, r) for r in runs],
                         "batch": runs[0].batch}, status=202)


async def _run_and_app(handler: APIHandler, run_id: str) -> tuple[RunInfo, Any]:
    """The run and its app's catalog entry, if the user may open the app (NotFound else)."""
    user = handler.require_user()
    run = await handler.ctx.run(handler.ctx.catalog.get_run, int(run_id))
    try:
        detail = await handler.ctx.run(may_open, handler, user, run.app)
    except NotFound:
        raise NotFound(f"no run with id {run_id}") from None
    return run, detail


async def _run_json(handler: APIHandler, run: RunInfo, detail: Any) -> dict[str, Any]:
    return run_json(handler, run, findings=may_see_run_findings(
        handler.ctx, handler.require_user(), detail, run))


class RunHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS, "DELETE": OPEN_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("One run: state, timings, queue position, findings, result, artifact URLs."),
        "DELETE": Op("Cancel a queued or running run (its owner or an admin)."),
    }

    async def get(self, id: str) -> None:
        run, detail = await _run_and_app(self, id)
        self.write_json(await _run_json(self, run, detail))

    async def delete(self, id: str) -> None:
        await cancel(self, id)


class RunCancelHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": OPEN_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "POST": Op("Cancel a queued or running run (its owner or an admin)."),
    }

    async def post(self, id: str) -> None:
        await cancel(self, id)


async def cancel(handler: APIHandler, run_id: str) -> None:
    run, detail = await _run_and_app(handler, run_id)
    user = handler.require_user()
    done = await handler.ctx.run(handler.ctx.catalog.cancel_run, run.id, user=user.name,
                                 ip=handler.client_ip())
    handler.write_json(await _run_json(handler, done, detail))


class RunArtifactHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": OPEN_APPS}
    docs: ClassVar[dict[str, Op]] = {
        "GET": Op("An output of a finished run: executed.ipynb (those who see the run's "
                  "findings only), report.html (shown inline in a "
                  "sandbox unless download=1), report.pdf (printed on its first download), "
                  "result.json or a declared file.",
                  query=(Param("download", "boolean", "send report.html as a download"),),
                  returns="application/octet-stream"),
    }

    async def get(self, id: str, path: str) -> None:
        run, detail = await _run_and_app(self, id)
        sha = run.artifacts.get(path)
        if sha is None and path == PDF and _pdfs(self) is not None and \
                _pdfs(self).offered(run):
            sha = await _pdfs(self).get(run)  # printed now, once, on its own threads
        if sha is None:
            raise _no_artifact(run, path)
        if path in PRIVATE_ARTIFACTS and not may_see_run_findings(
                self.ctx, self.require_user(), detail, run):
            raise PermissionDenied(
                f"{path} holds the app's code: only the run's owner, the app's analysts, "
                "reviewers and admins may download it")
        data = await self.ctx.run(self.ctx.store.get_blob, sha)
        filename = path.rsplit("/", 1)[-1]
        download = self.get_argument("download", "") in ("1", "true", "yes")
        self.set_header("Content-Type", content_type(path))
        self.set_header("Cache-Control", "private, max-age=3600")
        if path == REPORT:
            html = data.decode("utf-8", errors="replace")
            if has_widgets(html):
                bundle = self.static_url(WIDGET_BUNDLE)
                origin = f"{self.request.protocol}://{self.request.host}"
                folder = bundle.split("?", 1)[0].rsplit("/", 1)[0] + "/"
                self.set_header("Content-Security-Policy", frame_csp(origin + folder))
                html = with_embed_url(html, origin + bundle if bundle.startswith("/")
                                      else bundle)
            else:
                self.set_header("Content-Security-Policy", STATIC_FRAME_CSP)
            self.set_header("X-Frame-Options", "SAMEORIGIN")
            data = html.encode("utf-8")
        else:
            # a declared output is the app's file: never a document that could run anything
            self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
            download = True
        disposition = "attachment" if download else "inline"
        self.set_header("Content-Disposition", f'{disposition}; filename="{_ascii(filename)}"')
        self.finish(data)


def _no_artifact(run: RunInfo, path: str) -> NbappsError:
    err = NbappsError(f"run {run.id} has no output {path!r}"
                      + ("" if run.finished else f" yet (it is {run.state})"), code="NBA375")
    err.http_status = 404
    return err


def _ascii(name: str) -> str:
    return "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else "_"
                   for ch in name)[:200] or "output"


__all__ = ["AppRunsHandler", "RunArtifactHandler", "RunCancelHandler", "RunHandler",
           "content_type", "may_open", "may_see_run_findings", "run_json"]
