"""``NbappsLabApp``: the jupyter_server extension (configure it as ``c.NbappsLabApp.<trait>``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int, Unicode, default

from ..errors import NbappsError
from . import gallery as gallery_api
from .credentials import CredentialStore, normalize_gallery_url
from .jobs import Job, JobManager
from .records import PublishRecords


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("nbapps")
    except Exception:  # noqa: BLE001 - not installed (running from a source tree)
        return "0+unknown"


class NbappsLabApp(ExtensionApp):
    """Endpoints for the nbapps JupyterLab extension: validate, publish, submissions, token."""

    name = "nbapps_lab"
    load_other_extensions = True

    gallery_url = Unicode(
        "", config=True,
        help="Gallery used when the front-end sends none (the lab setting `galleryUrl` wins). "
             "`{base_url}` in it is replaced by this Jupyter server's base URL (a gallery "
             "proxied under the same prefix, as on Binder).",
    )
    gallery_launch_path = Unicode(
        "", config=True,
        help="Path under this Jupyter server that starts the default gallery on demand (a "
             "jupyter-server-proxy entry, e.g. 'nbapps-gallery/healthz'): JupyterLab requests it "
             "when the nbapps panel loads, so the gallery is up before the first publish.",
    )
    gallery_token_file = Unicode(
        "", config=True,
        help="File holding an API token for `gallery_url`, stored for the user at start when "
             "they have no token for that gallery yet (provisioning by Binder, JupyterHub or "
             "an admin); the user can replace or delete it in the panel like any token.",
    )
    use_hub_token = Bool(
        True, config=True,
        help="Under JupyterHub ($JUPYTERHUB_API_TOKEN set), send this server's Hub token to "
             "`gallery_url` when the user stored no token for it: a gallery that runs as a Hub "
             "service accepts it, so the panel needs no token set-up. Never sent to any other "
             "gallery.",
    )
    execute = Bool(
        True, config=True, help="Run notebooks when validating (publishing always runs them).",
    )
    cell_timeout = Float(
        0, config=True, help="Seconds a cell may run (0: nbapps' default or the notebook's).",
    )
    total_timeout = Float(0, config=True, help="Seconds a whole run may take (0: default).")
    max_parallel_jobs = Int(
        1, config=True, help="Validations/publications running at once; more wait their turn.",
    )
    job_retention = Float(1800, config=True, help="Seconds a finished job stays pollable.")
    data_dir = Unicode(config=True, help="Where the token file and publish records live.")

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "nbapps")

    @property
    def version(self) -> str:
        return _version()

    def timeouts(self) -> dict[str, float]:
        out = {}
        if self.cell_timeout:
            out["cell_timeout"] = self.cell_timeout
        if self.total_timeout:
            out["total_timeout"] = self.total_timeout
        return out

    def hub_token_for(self, gallery_url: str) -> str | None:
        """This server's JupyterHub token, for the default gallery only (see use_hub_token)."""
        token = os.environ.get("JUPYTERHUB_API_TOKEN", "").strip()
        if not (token and self.use_hub_token and self.gallery_url):
            return None
        if normalize_gallery_url(gallery_url) != normalize_gallery_url(self.gallery_url):
            return None
        return token

    def token_for(self, gallery_url: str) -> str | None:
        """The token the user stored for ``gallery_url``, else the Hub's (hub_token_for)."""
        stored = self.credentials.get(gallery_url)
        return stored if stored is not None else self.hub_token_for(gallery_url)

    def token_status(self, gallery_url: str) -> dict[str, object]:
        """What the panel may know of the token used for ``gallery_url`` (never the token)."""
        status: dict[str, object] = dict(self.credentials.status(gallery_url))
        if not status["set"] and self.hub_token_for(gallery_url):
            status.update({"set": True, "masked": None, "via": "jupyterhub"})
        return status

    def initialize_settings(self) -> None:
        folder = Path(self.data_dir)
        self.credentials = CredentialStore(folder / "lab-credentials.json")
        if "{base_url}" in self.gallery_url:
            self.gallery_url = self.gallery_url.replace("{base_url}", self.serverapp.base_url)
        if self.gallery_token_file and self.gallery_url:
            self._import_token(Path(self.gallery_token_file).expanduser())
        self.records = PublishRecords(folder / "lab-submissions.json")
        self.jobs = JobManager(max_parallel=self.max_parallel_jobs,
                               retention=self.job_retention, on_result=self._record)
        self.settings["nbapps_lab"] = self

    def _import_token(self, path: Path) -> None:
        try:
            if self.credentials.get(self.gallery_url) is not None:
                return
            token = path.read_text(encoding="utf-8").strip()
            self.credentials.set(self.gallery_url, token)
        except FileNotFoundError:
            return
        except (OSError, NbappsError) as exc:  # a bad file must not stop the Jupyter server
            self.log.warning("nbapps: token file %s not used: %s", path, exc)
            return
        self.log.info("nbapps: stored the token of %s for %s", path, self.gallery_url)

    def initialize_handlers(self) -> None:
        from .handlers import ROUTES

        self.handlers.extend(ROUTES)  # ExtensionApp prefixes the server's base_url

    def current_activity(self) -> list[dict[str, Any]] | None:
        """Running jobs keep an idle-culled server alive."""
        jobs = self.jobs.active_jobs()
        return [{"kind": j.kind, "path": j.path} for j in jobs] or None

    async def stop_extension(self) -> None:
        await self.jobs.shutdown()

    # -- publish records and submissions --------------------------------------------------------

    def _record(self, job: Job) -> None:
        result = job.result or {}
        submission = result.get("submission")
        if job.kind == "publish" and isinstance(submission, dict) and "id" in submission:
            self.records.add(job.options["gallery_url"], job.os_path, submission)

    def gallery_client(self, gallery: str, token: str) -> Any:
        from ..client import GalleryClient

        return GalleryClient(gallery, token, timeout=30)

    def list_submissions(self, gallery: str, token: str, os_path: Path, app: str | None,
                         ) -> dict[str, Any]:
        """This notebook's submissions (runs in a thread): of app ``app`` (the slug the
        front-end's model records), else the slug in the saved notebook, else the app this
        server published the file to; never matched by title."""
        slug = app or gallery_api.notebook_slug(os_path)
        if not slug:
            slug = (self.records.get(gallery, str(os_path)) or {}).get("app")
        with self.gallery_client(gallery, token) as client:
            return gallery_api.list_submissions(client, gallery, slug)

    def submission(self, gallery: str, token: str, submission_id: int) -> dict[str, Any]:
        """One submission now: state, the gallery's check, reviews, comments (in a thread)."""
        with self.gallery_client(gallery, token) as client:
            return gallery_api.get_submission(client, gallery, submission_id)

    def choose_app(self, gallery: str, token: str, os_path: Path, title: str) -> dict[str, str]:
        """The app slug a notebook without one is to publish to (in a thread)."""
        record = self.records.get(gallery, str(os_path))
        with self.gallery_client(gallery, token) as client:
            return gallery_api.choose_app(client, os_path, title, record)
