"""The ``/nbapps/...`` endpoints of the user's Jupyter server.

Every method is ``@web.authenticated`` (jupyter_server's identity) and ``@authorized`` on the
resource ``nbapps`` (jupyter_server's Authorizer decides; an Authorizer that does not know the
resource denies it). Cookie-authenticated non-GET requests need the XSRF token, as everywhere in
jupyter_server (``APIHandler``). Actions: ``read`` for looking, ``write`` for settings and
cancelling, ``execute`` for running the notebook (validate, publish).

``NbappsError``s become JSON answers ``{"error": code, "message", "hint"}`` with their status.
"""
from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import NbappsError, NotFound, UsageError
from ..slugs import is_slug
from .credentials import normalize_gallery_url
from .paths import fingerprint, resolve_notebook

if TYPE_CHECKING:
    from .app import NbappsLabApp

AUTH_RESOURCE = "nbapps"
MAX_BODY = 1024 * 1024
#: parameters cells are small; anything bigger is a mistake
MAX_SOURCE = 256 * 1024


class NbappsHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def lab(self) -> NbappsLabApp:
        return self.settings["nbapps_lab"]

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, NbappsError):
            if self._finished:
                return
            self.clear()
            self.set_status(e.http_status)
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(e.to_dict()))
            return
        super()._handle_request_exception(e)

    def json_body(self) -> dict[str, Any]:
        body = self.request.body or b""
        if len(body) > MAX_BODY:
            raise UsageError("request body too large", code="NBA100")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise UsageError("request body is not JSON", code="NBA100") from None
        if not isinstance(data, dict):
            raise UsageError("request body must be a JSON object", code="NBA100")
        return data

    def notebook(self, path: object) -> Any:
        cm = self.contents_manager
        root = getattr(cm, "root_dir", None)
        if not root:
            raise UsageError("nbapps needs notebooks on the server's file system",
                             code="NBA105")
        return resolve_notebook(root, path, allow_hidden=bool(getattr(cm, "allow_hidden",
                                                                      False)))

    def gallery_and_token(self) -> tuple[str, str]:
        """The gallery of the ``gallery`` query argument (else the server's default) and the
        user's token for it."""
        gallery = normalize_gallery_url(self.get_query_argument("gallery", "")
                                        or self.lab.gallery_url)
        token = self.lab.token_for(gallery)
        if token is None:
            raise UsageError(f"no API token stored for {gallery}", code="NBA381")
        return gallery, token

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))


class SettingsHandler(NbappsHandler):
    """Token status (never the token) per gallery; store or forget a token."""

    def _answer(self, gallery: str) -> dict[str, Any]:
        return {"gallery_url": gallery, "token": self.lab.token_status(gallery),
                "execute": self.lab.execute, "version": self.lab.version}

    @web.authenticated
    @authorized(action="read")
    def get(self) -> None:
        raw = self.get_query_argument("gallery", "")
        if raw:
            self.write_json(self._answer(normalize_gallery_url(raw)))
            return
        # no gallery asked for: the server's default (NbappsLabApp.gallery_url), if any, and
        # the path that starts it (the panel requests it once)
        if not self.lab.gallery_url:
            self.write_json({"gallery_url": "", "token": {"set": False, "masked": None},
                             "execute": self.lab.execute, "version": self.lab.version})
            return
        answer = self._answer(normalize_gallery_url(self.lab.gallery_url))
        answer["launch_path"] = self.lab.gallery_launch_path
        self.write_json(answer)

    @web.authenticated
    @authorized(action="write")
    def post(self) -> None:
        body = self.json_body()
        gallery = normalize_gallery_url(body.get("gallery_url"))
        self.lab.credentials.set(gallery, body.get("token"))
        self.log.info("nbapps: API token stored for %s", gallery)
        self.write_json(self._answer(gallery))

    @web.authenticated
    @authorized(action="write")
    def delete(self) -> None:
        gallery = normalize_gallery_url(self.get_query_argument("gallery", ""))
        self.lab.credentials.delete(gallery)
        self.write_json(self._answer(gallery))


class ContractHandler(NbappsHandler):
    """The parameter contract of a parameters cell's source (unsaved edits included)."""

    @web.authenticated
    @authorized(action="read")
    def post(self) -> None:
        from ..contract import apply_constraints, read_parameters_cell

        body = self.json_body()
        source = body.get("source")
        constraints = body.get("constraints") or {}
        if not isinstance(source, str) or len(source) > MAX_SOURCE:
            raise UsageError("`source` must be the parameters cell's text", code="NBA100")
        if not isinstance(constraints, dict):
            raise UsageError("`constraints` must be metadata.nbapps.parameters (a mapping)",
                             code="NBA100")
        params, problems = read_parameters_cell(source)
        params, constraint_problems = apply_constraints(params, constraints)
        self.write_json({
            "parameters": [p.to_dict() for p in params],
            "problems": [{"line": p.line, "message": p.message} for p in problems],
            "constraint_problems": [str(p) for p in constraint_problems],
        })


class JobsHandler(NbappsHandler):
    """``POST``: start (or join) a job for a notebook; ``GET ?path=``: its latest job."""

    kind = ""

    @web.authenticated
    @authorized(action="execute")
    async def post(self) -> None:
        body = self.json_body()
        path = body.get("path")
        os_path = self.notebook(path)
        options: dict[str, Any] = {}
        secrets: dict[str, Any] = {}
        if self.kind == "validate":
            options["execute"] = bool(body.get("execute", self.lab.execute))
        else:
            gallery = normalize_gallery_url(body.get("gallery_url") or self.lab.gallery_url)
            token = self.lab.credentials.get(gallery)
            if token is None:
                raise UsageError(f"no API token stored for {gallery}", code="NBA381")
            options["gallery_url"] = gallery
            secrets["token"] = token
        options.update(self.lab.timeouts())
        digest = await asyncio.get_running_loop().run_in_executor(None, fingerprint, os_path)
        job, joined = self.lab.jobs.start(self.kind, str(path), os_path, digest, options,
                                          secrets)
        self.write_json({"job": job.snapshot(), "joined": joined}, status=202)

    @web.authenticated
    @authorized(action="read")
    def get(self) -> None:
        os_path = self.notebook(self.get_query_argument("path", ""))
        job = self.lab.jobs.latest(self.kind, str(os_path))
        if job is None:
            raise NotFound(f"no {self.kind} job for this notebook", code="NBA302")
        self.write_json(job.snapshot())


class JobHandler(NbappsHandler):
    """``GET``: a job's snapshot (poll it); ``DELETE``: cancel it."""

    kind = ""

    def _job(self, job_id: str) -> Any:
        job = self.lab.jobs.get(job_id, self.kind)
        if job is None:
            raise NotFound(f"no {self.kind} job {job_id}", code="NBA302")
        return job

    @web.authenticated
    @authorized(action="read")
    def get(self, job_id: str) -> None:
        self.write_json(self._job(job_id).snapshot())

    @web.authenticated
    @authorized(action="write")
    def delete(self, job_id: str) -> None:
        job = self.lab.jobs.cancel(self._job(job_id).id)
        self.write_json(job.snapshot(), status=202)


class ValidateJobsHandler(JobsHandler):
    kind = "validate"


class PublishJobsHandler(JobsHandler):
    kind = "publish"


class ValidateJobHandler(JobHandler):
    kind = "validate"


class PublishJobHandler(JobHandler):
    kind = "publish"


class SubmissionsHandler(NbappsHandler):
    """Submissions of one notebook's app in the gallery: state, check, decisions, comments.

    ``?path=`` the notebook, ``&app=`` its slug as the front-end's model records it (optional:
    else the saved notebook's, else the app this server published it to). Never by title.
    """

    @web.authenticated
    @authorized(action="read")
    async def get(self) -> None:
        os_path = self.notebook(self.get_query_argument("path", ""))
        app = self.get_query_argument("app", "").strip() or None
        if app is not None and not is_slug(app):
            raise UsageError(f"not an app slug: {app[:100]!r}", code="NBA100")
        gallery, token = self.gallery_and_token()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, self.lab.list_submissions, gallery, token,
                                            os_path, app)
        self.write_json({"gallery_url": gallery, **answer})


class SubmissionHandler(NbappsHandler):
    """One submission as the gallery shows it now (the panel follows the gallery's check)."""

    @web.authenticated
    @authorized(action="read")
    async def get(self, submission_id: str) -> None:
        gallery, token = self.gallery_and_token()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, self.lab.submission, gallery, token,
                                            int(submission_id))
        self.write_json(answer)


class AppHandler(NbappsHandler):
    """``?path=&title=``: the gallery app a notebook without a recorded slug publishes to."""

    @web.authenticated
    @authorized(action="read")
    async def get(self) -> None:
        os_path = self.notebook(self.get_query_argument("path", ""))
        title = self.get_query_argument("title", "")[:300]
        gallery, token = self.gallery_and_token()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(None, self.lab.choose_app, gallery, token, os_path,
                                            title)
        self.write_json(answer)


_ID = r"([0-9a-f]{32})"

#: the route table (tests enumerate it to check that every method is guarded)
ROUTES: list[tuple[str, type[NbappsHandler]]] = [
    ("/nbapps/settings", SettingsHandler),
    ("/nbapps/contract", ContractHandler),
    ("/nbapps/validate", ValidateJobsHandler),
    (f"/nbapps/validate/{_ID}", ValidateJobHandler),
    ("/nbapps/publish", PublishJobsHandler),
    (f"/nbapps/publish/{_ID}", PublishJobHandler),
    ("/nbapps/submissions", SubmissionsHandler),
    (r"/nbapps/submissions/([0-9]{1,18})", SubmissionHandler),
    ("/nbapps/app", AppHandler),
]
