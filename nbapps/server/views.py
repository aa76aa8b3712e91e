"""Shared read helpers of the page and API handlers (catalog reads, cached listings, sources).

What pages show of a version comes from what the gallery stores and derived itself: its source
(:func:`read_bundle_member`, only ``app.ipynb`` and the files it declares, never the rest of a
client's upload), the contract in its gallery-derived manifest (:func:`contract_of`) and the
thumbnail its check made (:func:`send_thumbnail`).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import PurePosixPath
from threading import Lock
from typing import TYPE_CHECKING, Any

from tornado.web import RequestHandler

from ..accounts import Permission
from ..catalog import AppDetail, AppPage, VersionInfo
from ..contract import Parameter, ParameterContract
from ..errors import NotFound, PermissionDenied, UsageError
from .identity import WebUser

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server")

#: messages shown after a form redirect (``?done=<key>``): fixed texts, never echoed input
NOTICES: dict[str, dict[str, str]] = {
    "approve": {"notice": "Approved: this version is now live.", "notice_kind": "ok"},
    "reject": {"notice": "Rejected.", "notice_kind": "ok"},
    "request_changes": {"notice": "Changes requested: the author has been sent back the "
                        "comment.", "notice_kind": "ok"},
    "withdraw": {"notice": "Submission withdrawn.", "notice_kind": "ok"},
    "comment": {"notice": "Comment added.", "notice_kind": "ok"},
    "rollback": {"notice": "Rolled back: the previous version is live again.",
                 "notice_kind": "ok"},
    "token": {"notice": "Token revoked.", "notice_kind": "ok"},
    "user": {"notice": "User updated.", "notice_kind": "ok"},
}

#: image types a thumbnail may have (no SVG: it can carry script)
THUMBNAIL_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
                   ".gif": "image/gif", ".webp": "image/webp"}


def int_arg(handler: RequestHandler, name: str, default: int, *, lo: int = 1,
            hi: int = 10_000) -> int:
    raw = handler.get_argument(name, "")
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{name} must be a whole number", code="NBA331") from None
    return max(lo, min(hi, value))


def gallery_page(ctx: ServerContext, *, q: str, tag: str, sort: str, page: int,
                 per_page: int | None = None, category: str = "") -> AppPage:
    per = per_page or ctx.options.per_page
    tags = (tag,) if tag else ()
    key = ("apps", q, tags, category, sort, page, per)
    return ctx.cache.get(key, lambda: ctx.catalog.list_apps(
        q or None, tags=tags, sort=sort, page=page, per_page=per, category=category or None))


def tag_list(ctx: ServerContext) -> list[tuple[str, int]]:
    return ctx.cache.get(("tags",), lambda: ctx.catalog.list_tags(limit=100))


def category_list(ctx: ServerContext) -> list[tuple[str, int]]:
    """(category, live apps in it), by name: the gallery's sections."""
    return ctx.cache.get(("categories",), lambda: ctx.catalog.list_categories())


def is_reviewer(ctx: ServerContext, user: WebUser | None) -> bool:
    return ctx.authorizer.has_permission(user, Permission.REVIEW)


def app_visible_to(ctx: ServerContext, user: WebUser, detail: AppDetail) -> bool:
    """Live apps are visible to every viewer; others only to reviewers and their author."""
    return detail.live is not None or is_reviewer(ctx, user) or detail.app.author == user.name


def visible_versions(ctx: ServerContext, user: WebUser, detail: AppDetail
                     ) -> list[VersionInfo]:
    """Viewers see approved versions only; reviewers and the author see every version."""
    if is_reviewer(ctx, user) or detail.app.author == user.name:
        return list(detail.versions)
    return [v for v in detail.versions if v.state.value == "approved"]


def can_see_version(ctx: ServerContext, user: WebUser, version: VersionInfo) -> bool:
    return is_reviewer(ctx, user) or version.submitter == user.name


def version_for(ctx: ServerContext, user: WebUser, version_id: int) -> VersionInfo:
    """The submission if this user may see it (reviewer or submitter); NBA302 / NBA301."""
    version = ctx.catalog.get_version(version_id)
    if not can_see_version(ctx, user, version):
        raise PermissionDenied("only reviewers and its author can see this submission")
    return version


def contract_of(manifest: dict[str, Any]) -> list[Parameter]:
    """The parameter contract in a version's manifest, as the gallery derived it from the
    source (empty if none or unreadable; empty for a version stored by an earlier nbapps until
    its check has derived one: that manifest was the client's)."""
    if isinstance(manifest, dict) and manifest.get("legacy"):
        return []
    data = manifest.get("parameters") if isinstance(manifest, dict) else None
    if data is None and isinstance(manifest, dict):
        data = manifest.get("contract")
    if not data:
        return []
    try:
        return list(ParameterContract.from_dict(data).parameters)
    except (TypeError, ValueError, KeyError):
        log.debug("unreadable parameter contract in manifest", exc_info=True)
        return []


# -- bundle members ------------------------------------------------------------------------------

class _BytesLRU:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._data: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._size = 0
        self._lock = Lock()

    def get(self, key: tuple[str, str]) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: bytes) -> None:
        if len(value) > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._data:
                return
            self._data[key] = value
            self._size += len(value)
            while self._size > self.max_bytes:
                _, old = self._data.popitem(last=False)
                self._size -= len(old)


_members = _BytesLRU(32 * 1024 * 1024)


def read_bundle_member(ctx: ServerContext, sha256: str, member: str,
                       max_bytes: int = 20 * 1024 * 1024, *, key: str | None = None) -> bytes:
    """One file of a stored source (by its path in it); NotFound NBA302.

    ``sha256``/``key`` name the source (:meth:`nbapps.store.BundleStore.read_source`: a source
    object, or the source files of a legacy client archive). Files that are not source (a
    client's ``executed.ipynb``, ``manifest.json``, thumbnail, extra files) are never read.
    Sources are immutable and addressed by hash, so files are cached by (hash, path).
    """
    norm = str(PurePosixPath(member))
    if norm.startswith(("/", "..")) or "/../" in f"/{norm}/":
        raise NotFound(f"no file {member!r} in the source")
    cache_key = (f"{sha256}:{key or ''}", norm)
    cached = _members.get(cache_key)
    if cached is not None:
        return cached
    source = ctx.store.read_source(sha256, key)
    content = source.files.get(norm)
    if content is None or len(content) > max_bytes:
        raise NotFound(f"no file {member!r} in the source")
    for name, data in source.files.items():
        _members.put((f"{sha256}:{key or ''}", name), data)
    return content


async def send_thumbnail(handler: Any, sha256: str, member: str | None) -> None:
    """Answer with a version's thumbnail: the PNG its check made (``member`` is the version's
    ``thumbnail`` reference, :func:`nbapps.jobs.artifacts.thumbnail_ref`). Anything else (a
    path inside a legacy client archive) is not served: NotFound NBA302."""
    from ..jobs.artifacts import parse_thumbnail_ref

    del sha256  # the reference names the blob itself
    blob = parse_thumbnail_ref(member)
    if blob is None:
        raise NotFound("no thumbnail made by the gallery for this version yet")
    content = await handler.ctx.run(handler.ctx.store.get_blob, blob)
    handler.set_header("Content-Type", "image/png")
    handler.set_header("Cache-Control", "private, max-age=86400")
    handler.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
    handler.set_header("X-Content-Type-Options", "nosniff")
    handler.set_header("ETag", f'"{blob[:32]}"')
    handler.finish(content)
