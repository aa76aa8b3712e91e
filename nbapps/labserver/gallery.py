"""What the lab panel shows of the gallery: a notebook's app, its submissions, one submission.

**A notebook's identity in the gallery is its app slug**, recorded in the notebook as
``metadata.nbapps.slug`` by the first publish from JupyterLab (before the save, so the submitted
notebook carries it) and sent with every submission. Titles are not identities: two notebooks
with one title are two apps, and renaming the title keeps the app. A notebook without a recorded
slug gets one from :func:`choose_app`:

1. the app this server published the notebook file to before (the publish records);
2. else the title's slug, unless an app of that name already exists: an app of the user's
   whose newest submission came from a file of the same name is taken to be this notebook's
   (published from the CLI or before slugs were recorded); any other is another notebook's, and
   ``<slug>-2``, ``<slug>-3`` ... are tried.

An app of another author that is not live is invisible to the user: choosing its name fails at
submission with the gallery's NBA301 ("pick another name"); ``metadata.nbapps.slug`` may then
be set by hand.

Every function here calls the gallery with the user's token (blocking; the handlers run them
in a thread) and returns plain JSON for the front-end.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from jupyter_server.utils import url_path_join

from ..errors import NbappsError
from ..slugs import MAX_SLUG, is_slug, slugify

log = logging.getLogger("nbapps.labserver")

#: how many of a notebook's submissions the panel shows (each costs one gallery request)
SHOWN_SUBMISSIONS = 10
#: findings of a gallery check relayed per submission (a failed run rarely has more)
MAX_FINDINGS = 50
#: ``<slug>``, ``<slug>-2`` ... ``<slug>-<MAX_CANDIDATES>`` are tried for a new app
MAX_CANDIDATES = 20

_SUBMISSION_KEYS = ("id", "app", "number", "state", "url", "title", "description", "tags",
                    "created_at", "submitter", "decided_by", "decided_at", "comment", "live")
_CHECK_KEYS = ("state", "queue_position", "started_at", "finished_at", "message")


def notebook_meta(os_path: Path) -> dict[str, Any]:
    """``metadata.nbapps`` of a notebook file as stored ({} if unreadable or not a mapping)."""
    try:
        data = json.loads(Path(os_path).read_text(encoding="utf-8"))
        meta = data["metadata"].get("nbapps")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def notebook_slug(os_path: Path) -> str | None:
    """The app slug recorded in the notebook (``metadata.nbapps.slug``), if it is a valid one."""
    slug = notebook_meta(os_path).get("slug")
    return slug.strip() if isinstance(slug, str) and is_slug(slug.strip()) else None


def _check_view(check: Any) -> dict[str, Any] | None:
    if not isinstance(check, dict):
        return None
    out = {k: check.get(k) for k in _CHECK_KEYS if k in check}
    findings = check.get("findings")
    if isinstance(findings, list):
        out["findings"] = [f for f in findings if isinstance(f, dict)][:MAX_FINDINGS]
        out["findings_total"] = len(findings)
    runs = check.get("runs")
    if isinstance(runs, list):  # a summary: the panel shows no per-cell timings
        out["runs"] = [{k: r.get(k) for k in ("label", "ok", "seconds")}
                       for r in runs[:20] if isinstance(r, dict)]
    return out


def submission_view(detail: dict[str, Any], gallery: str) -> dict[str, Any]:
    """The part of ``GET /api/submissions/<id>`` the panel shows: state, the gallery's check,
    the review decisions with their comments and the plain comments (no manifest)."""
    out = {k: detail.get(k) for k in _SUBMISSION_KEYS if k in detail}
    out.setdefault("url", url_path_join(gallery, "submissions", str(detail.get("id"))))
    check = _check_view(detail.get("check"))
    if check is not None:
        out["check"] = check
    out["reviews"] = [{"action": r.get("action"), "actor": r.get("actor"),
                       "comment": r.get("comment"), "at": r.get("at")}
                      for r in detail.get("reviews") or [] if isinstance(r, dict)]
    out["comments"] = [{"author": c.get("author"), "comment": c.get("comment"),
                        "at": c.get("at")}
                       for c in detail.get("comments") or [] if isinstance(c, dict)]
    return out


def get_submission(client: Any, gallery: str, submission_id: int) -> dict[str, Any]:
    return submission_view(client.submission(submission_id), gallery)


def list_submissions(client: Any, gallery: str, slug: str | None) -> dict[str, Any]:
    """The user's submissions of app ``slug``, newest first, each with its check and reasons.

    ``slug`` None (the notebook was never published) lists nothing: submissions are matched
    by the app, never by title.
    """
    if not slug:
        return {"app": None, "items": []}
    items = client.submissions(app=slug, mine=True)
    items = sorted(items, key=lambda i: i.get("id", 0), reverse=True)[:SHOWN_SUBMISSIONS]
    out = []
    for item in items:
        try:
            out.append(submission_view({**item, **client.submission(int(item["id"]))}, gallery))
        except NbappsError:  # the list entry is still worth showing
            log.debug("nbapps: no detail for submission %s", item.get("id"), exc_info=True)
            out.append(submission_view(item, gallery))
    return {"app": slug, "items": out}


def _candidates(base: str) -> list[str]:
    out = [base]
    for n in range(2, MAX_CANDIDATES + 1):
        suffix = f"-{n}"
        out.append(base[: MAX_SLUG - len(suffix)].rstrip("-") + suffix)
    return out


def _source_name(client: Any, submission_id: int) -> str | None:
    try:
        manifest = client.submission(submission_id).get("manifest") or {}
    except NbappsError:
        return None
    if not isinstance(manifest, dict):
        return None
    # the uploader's file name: in a client-written manifest, or (a gallery that derives the
    # manifest itself) in the client's claim kept beside it
    claim = manifest.get("client_claim")
    name = manifest.get("source_name") or (claim.get("source_name")
                                           if isinstance(claim, dict) else None)
    return name if isinstance(name, str) else None


def choose_app(client: Any, os_path: Path, title: str, record: dict[str, Any] | None
               ) -> dict[str, str]:
    """The app slug a notebook with no recorded slug is to publish to (see the module doc)."""
    recorded = notebook_slug(os_path)
    if recorded:
        return {"slug": recorded, "source": "notebook"}
    previous = (record or {}).get("app")
    if isinstance(previous, str) and is_slug(previous):
        return {"slug": previous, "source": "record"}
    base = slugify(title.strip() or str(notebook_meta(os_path).get("title") or "")
                   or Path(os_path).stem)
    for slug in _candidates(base):
        mine = client.submissions(app=slug, mine=True)
        if mine:
            newest = max(mine, key=lambda i: i.get("id", 0))
            if _source_name(client, int(newest["id"])) == Path(os_path).name:
                return {"slug": slug, "source": "gallery"}
            continue  # another notebook's app
        try:
            client.app(slug)
        except NbappsError as exc:
            if getattr(exc, "http_status", None) == 404:
                return {"slug": slug, "source": "new"}
            raise
        # a live app of someone else: taken
    raise NbappsError(f"no free app name from {base!r} (tried {MAX_CANDIDATES})",
                      code="NBA382")
