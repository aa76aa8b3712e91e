"""HTTP client of the gallery API (the CLI's ``publish`` and ``review``, the demo, tests).

Where the gallery and token come from, first found wins: explicit arguments (``--gallery``,
``--token``), the environment (``NBAPPS_GALLERY``, ``NBAPPS_TOKEN``), then a config file:
``$NBAPPS_CONFIG`` or ``~/.config/nbapps/config.toml`` (or ``config.json``) with ``gallery`` and
``token`` keys. So the token never has to be typed on a command line (where other users of the
machine could read it in the process list).

Errors the server answers with (``{"error": code, "message": ...}``) are raised as the matching
:class:`~nbapps.errors.NbappsError` subclass with the server's code.
"""
from __future__ import annotations

import json
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from .errors import (
    AuthRequired,
    BundleError,
    Conflict,
    NbappsError,
    NotebookError,
    NotFound,
    PermissionDenied,
    TooLarge,
    UsageError,
)

log = logging.getLogger("nbapps.client")

ENV_GALLERY = "NBAPPS_GALLERY"
ENV_TOKEN = "NBAPPS_TOKEN"
ENV_CONFIG = "NBAPPS_CONFIG"

_BY_STATUS: dict[int, type[NbappsError]] = {
    400: UsageError, 401: AuthRequired, 403: PermissionDenied, 404: NotFound, 409: Conflict,
    413: TooLarge, 422: NotebookError,
}


def config_file() -> Path | None:
    """The client config file in use, if any."""
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nbapps"
    candidates = [folder / "config.toml", folder / "config.json"]
    alt = Path(user_config_dir("nbapps", appauthor=False))
    candidates += [alt / "config.toml", alt / "config.json"]
    for path in candidates:
        if path.is_file():
            return path
    return None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc}", code="NBA336") from None
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover
                import tomli as tomllib
            data = tomllib.loads(text)
    except ValueError as exc:
        raise UsageError(f"config file {path} is invalid: {exc}", code="NBA336") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a table of settings", code="NBA336")
    section = data.get("nbapps")
    if isinstance(section, dict):  # allow an [nbapps] table too
        data = {**data, **section}
    if data.get("token"):
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                log.warning("config file %s holds a token and is readable by others; "
                            "run: chmod 600 %s", path, path)
        except OSError:
            pass
    return data


@dataclass(frozen=True)
class ClientSettings:
    gallery: str
    token: str | None
    source: str  # where the token came from (for messages): "argument", "environment", path

    @classmethod
    def resolve(cls, gallery: str | None = None, token: str | None = None,
                *, require_token: bool = True) -> ClientSettings:
        source = "argument" if token else ""
        gallery = gallery or os.environ.get(ENV_GALLERY) or None
        if not token and os.environ.get(ENV_TOKEN):
            token, source = os.environ[ENV_TOKEN], "environment"
        if not gallery or not token:
            path = config_file()
            if path is not None:
                data = read_config_file(path)
                gallery = gallery or data.get("gallery") or data.get("url")
                if not token and data.get("token"):
                    token, source = str(data["token"]), str(path)
        if not gallery:
            raise UsageError("no gallery URL: pass --gallery, set NBAPPS_GALLERY or `gallery` "
                             "in ~/.config/nbapps/config.toml", code="NBA336")
        if require_token and not token:
            raise UsageError("no API token: set NBAPPS_TOKEN or `token` in "
                             "~/.config/nbapps/config.toml (create one on your account page)",
                             code="NBA336")
        return cls(gallery=str(gallery).rstrip("/"), token=token, source=source)


def _error_from(response: httpx.Response) -> NbappsError:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        code = data["error"]
        message = str(data.get("message") or response.reason_phrase)
        cls = _BY_STATUS.get(response.status_code, NbappsError)
        if code.startswith("NBA2") and response.status_code == 400:
            cls = BundleError
        err = cls(message, code=code, hint=data.get("hint"), details=data.get("details"))
        err.http_status = response.status_code
        return err
    return NbappsError(
        f"unexpected answer from the gallery: HTTP {response.status_code} "
        f"{response.reason_phrase}", code="NBA335")


class GalleryClient:
    """Thin, synchronous client of ``/api``; one connection pool per instance."""

    def __init__(self, gallery: str, token: str | None = None, *, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.gallery = gallery.rstrip("/")
        headers = {"User-Agent": f"nbapps/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.http = httpx.Client(base_url=self.gallery, headers=headers, timeout=timeout,
                                 transport=transport, follow_redirects=False)

    @classmethod
    def from_settings(cls, settings: ClientSettings, **kw: Any) -> GalleryClient:
        return cls(settings.gallery, settings.token, **kw)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> GalleryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise NbappsError(f"the gallery at {self.gallery} did not answer in time ({exc})",
                              code="NBA335") from None
        except httpx.HTTPError as exc:
            raise NbappsError(f"cannot reach the gallery at {self.gallery}: {exc}",
                              code="NBA335") from None
        if response.status_code >= 400:
            raise _error_from(response)
        if response.status_code in (301, 302, 303, 307, 308):
            raise NbappsError(f"{self.gallery} redirected to {response.headers.get('location')}"
                              ": is this the gallery's API URL?", code="NBA335")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise NbappsError(f"{self.gallery} did not answer with JSON: is it an nbapps "
                              "gallery?", code="NBA335") from None

    # -- API -----------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return dict(self.request("GET", "/api/me"))

    def submit(self, archive: bytes, *, slug: str | None = None) -> dict[str, Any]:
        """Upload an app archive (:func:`nbapps.bundle.pack_notebook_source`, or a whole
        bundle); ``{"id", "url", "state", "created", "check", ...}``, at once: the gallery's
        own check of it runs afterwards (:meth:`wait_for_check`)."""
        params = {"slug": slug} if slug else None
        return dict(self.request("POST", "/api/submissions", content=archive, params=params,
                                 headers={"Content-Type": "application/gzip"}))

    def submissions(self, *, state: str | None = None, mine: bool = False,
                    app: str | None = None, page: int = 1) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"page": page}
        if state:
            params["state"] = state
        if mine:
            params["mine"] = "1"
        if app:
            params["app"] = app
        return list(self.request("GET", "/api/submissions", params=params)["items"])

    def submission(self, version_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/submissions/{int(version_id)}"))

    def check(self, version_id: int) -> dict[str, Any]:
        """The gallery's check of a submission (``state``, ``queue_position``, ``findings``,
        ``runs``...)."""
        return dict(self.request("GET", f"/api/submissions/{int(version_id)}/check"))

    def recheck(self, version_id: int) -> dict[str, Any]:
        """Queue the check of a failed (or submitted) version again (reviewers, admins)."""
        return dict(self.request("POST", f"/api/submissions/{int(version_id)}/check", json={}))

    def wait_for_check(self, version_id: int, timeout: float = 1800.0, *,
                       on_update: Callable[[dict[str, Any]], None] | None = None,
                       poll: float = 0.25, max_poll: float = 1.0) -> dict[str, Any]:
        """Follow the gallery's check of a submission until its verdict; returns the
        submission (``GET /api/submissions/<id>``, with ``check``).

        ``on_update(check)`` is called whenever the check's state or queue place changes. Polls
        every ``poll`` seconds, slowing to ``max_poll`` while the check is queued (a verdict
        is seen at most ``max_poll`` late). NbappsError NBA325 after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        verdicts = 0
        delay = poll
        while True:
            sub = self.submission(version_id)
            check = sub.get("check") or {}
            state = check.get("state")
            now = (state, check.get("queue_position"))
            if now != seen:
                seen = now
                if on_update is not None:
                    on_update(check)
            if sub.get("state") != "validating":
                return sub
            if state in ("passed", "failed", "error"):
                # a verdict moves the version with it; a gallery that read the two one after
                # the other may show it beside "validating" for a moment: ask once more
                verdicts += 1
                if verdicts > 2:
                    return sub
            left = deadline - time.monotonic()
            if left <= 0:
                raise NbappsError(
                    f"no verdict from the gallery within {timeout:g} s (the check is {state}); "
                    f"follow it at {sub.get('url') or self.gallery}", code="NBA325",
                    details={"id": version_id, "check": check})
            time.sleep(min(delay, left))
            delay = min(max_poll, delay * 1.5) if state == "queued" else poll

    def decide(self, version_id: int, decision: str, comment: str = "") -> dict[str, Any]:
        return dict(self.request("POST", f"/api/submissions/{int(version_id)}/decision",
                                 json={"decision": decision, "comment": comment}))

    def withdraw(self, version_id: int, comment: str = "") -> dict[str, Any]:
        return dict(self.request("POST", f"/api/submissions/{int(version_id)}/withdraw",
                                 json={"comment": comment}))

    def comment(self, version_id: int, text: str) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/submissions/{int(version_id)}/comments",
                                 json={"comment": text}))

    def rollback(self, slug: str, comment: str = "") -> dict[str, Any]:
        return dict(self.request("POST", f"/api/apps/{slug}/rollback", json={"comment": comment}))

    def apps(self, q: str | None = None, *, tag: str | None = None, sort: str | None = None,
             page: int = 1, per_page: int | None = None) -> dict[str, Any]:
        params: Mapping[str, Any] = {k: v for k, v in (("q", q), ("tag", tag), ("sort", sort),
                                                        ("page", page), ("per_page", per_page))
                                     if v}
        return dict(self.request("GET", "/api/apps", params=params))

    def app(self, slug: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/apps/{slug}"))

    # -- runs (issue 14) -----------------------------------------------------------------------

    def create_runs(self, slug: str, parameter_sets: list[dict[str, Any]], *,
                    version: int | None = None) -> dict[str, Any]:
        """Queue one run of ``slug`` per parameter set; ``{"runs": [...], "batch": id}``."""
        body: dict[str, Any] = {"parameters": parameter_sets[0]} if len(parameter_sets) == 1 \
            else {"batch": parameter_sets}
        if version is not None:
            body["version"] = int(version)
        return dict(self.request("POST", f"/api/apps/{slug}/runs", json=body))

    def runs(self, slug: str, *, batch: str | None = None, limit: int = 50
             ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"batch": batch} if batch else {})}
        return list(self.request("GET", f"/api/apps/{slug}/runs", params=params)["items"])

    def run(self, run_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/runs/{int(run_id)}"))

    def cancel_run(self, run_id: int) -> dict[str, Any]:
        return dict(self.request("POST", f"/api/runs/{int(run_id)}/cancel", json={}))

    def run_artifact(self, run_id: int, name: str) -> bytes:
        """The bytes of one output of a run (``report.html`` as its download)."""
        try:
            response = self.http.get(f"/api/runs/{int(run_id)}/{name}",
                                     params={"download": "1"})
        except httpx.HTTPError as exc:
            raise NbappsError(f"cannot reach the gallery at {self.gallery}: {exc}",
                              code="NBA335") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response.content

    def wait_for_run(self, run_id: int, timeout: float = 3600.0, *,
                     on_update: Callable[[dict[str, Any]], None] | None = None,
                     poll: float = 0.2, max_poll: float = 2.0) -> dict[str, Any]:
        """Follow a run until it has finished; returns it. NBA375 after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        seen: tuple[Any, ...] | None = None
        delay = poll
        while True:
            run = self.run(run_id)
            now = (run.get("state"), run.get("queue_position"))
            if now != seen:
                seen = now
                if on_update is not None:
                    on_update(run)
            if run.get("state") not in ("queued", "running"):
                return run
            left = deadline - time.monotonic()
            if left <= 0:
                raise NbappsError(f"run {run_id} has not finished within {timeout:g} s (it is "
                                  f"{run.get('state')})", code="NBA375")
            time.sleep(min(delay, left))
            delay = min(max_poll, delay * 1.3)
