"""Live previews of submitted versions (issue 10, point 3): what a preview is, by name and rule.

A reviewer (and the version's author) can open a submitted version as an app before deciding:
a runner of the version's stored source, started by the same supervisor, isolated like a live
app. It runs under its own runtime key, ``~v<version id>``, which can never be an app slug
(slugs are ``[a-z0-9-]``), so a preview never counts as, replaces or is replaced by the live
runner of its app. Its URLs are the app proxy's, ``<base>apps/~v<id>/~t/<ticket>/``.

Only a version waiting for a decision (:data:`PREVIEW_STATES`) whose manifest the gallery
derived from the source by its own check can be previewed: a version being checked, whose check
failed, or that was decided or withdrawn cannot (its preview has ended: NBA360, HTTP 410).
"""
from __future__ import annotations

import re
from typing import Any

from .errors import NbappsError
from .jobs.source import is_derived
from .review import State

#: runtime keys of previews start with this (a character no slug has)
PREFIX = "~v"
#: a preview key in a URL pattern (the app proxy's routes)
KEY_PATTERN = r"~v[1-9][0-9]{0,17}"
_KEY = re.compile(KEY_PATTERN)
#: version states a preview may run in (a decision is pending)
PREVIEW_STATES = frozenset({State.SUBMITTED})


class PreviewEnded(NbappsError):
    """The version can no longer be previewed (decided, withdrawn, or sent back to checks)."""

    code = "NBA360"
    http_status = 410


class PreviewUnavailable(NbappsError):
    """The version cannot be previewed (yet): being checked, or its check failed."""

    code = "NBA361"
    http_status = 409


def preview_key(version_id: int) -> str:
    """The runtime key (and app proxy path segment) of the preview of ``version_id``."""
    return f"{PREFIX}{int(version_id)}"


def preview_version(key: str) -> int | None:
    """The version id of a preview key; None if ``key`` is not one (an app slug)."""
    if not _KEY.fullmatch(key or ""):
        return None
    return int(key[len(PREFIX):])


def is_preview_key(key: str) -> bool:
    return preview_version(key) is not None


def previewable(version: Any) -> bool:
    """Whether ``version`` (a catalog VersionInfo) may run as a preview now."""
    return State(version.state) in PREVIEW_STATES and is_derived(version.manifest)


def check_previewable(version: Any) -> None:
    """Raise :class:`PreviewEnded` (410) or :class:`PreviewUnavailable` (409) unless the
    version may run as a preview now; the message says why, in the reviewer's words."""
    if previewable(version):
        return
    state = State(version.state)
    name = f"version {version.number} of {version.app_slug}"
    if state in (State.VALIDATING, State.FAILED) or state in PREVIEW_STATES:
        why = ("its check failed" if state is State.FAILED
               else "the gallery has not checked it yet")
        raise PreviewUnavailable(f"{name} cannot be previewed: {why}")
    what = state.value.replace("_", " ")
    raise PreviewEnded(f"The preview of {name} has ended: the version was {what}. "
                       + ("Open the live app instead." if state is State.APPROVED else ""))


__all__ = ["KEY_PATTERN", "PREFIX", "PREVIEW_STATES", "PreviewEnded", "PreviewUnavailable",
           "check_previewable", "is_preview_key", "preview_key", "preview_version",
           "previewable"]
