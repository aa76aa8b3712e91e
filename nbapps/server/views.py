"""Shared read helpers of the page and API handlers (catalog reads, cached listings, bundles)."""
from __future__ import annotations

import io
import logging
import mimetypes
import tarfile
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
                 per_page: int | None = None) -> AppPage:
    per = per_page or ctx.options.per_page
    tags = (tag,) if tag else ()
    key = ("apps", q, tags, sort, page, per)
    return ctx.cache.get(key, lambda: ctx.catalog.list_apps(
        q or None, tags=tags, sort=sort, page=page, per_page=per))


def tag_list(ctx: ServerContext) -> list[tuple[str, int]]:
    return ctx.cache.get(("tags",), lambda: ctx.catalog.list_tags(limit=100))


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
    """The parameter contract stored in a bundle manifest (empty if none or unreadable)."""
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
                       max_bytes: int = 20 * 1024 * 1024) -> bytes:
    """One file of a stored bundle archive (by its path in the bundle); NotFound NBA302.

    Bundles are immutable and addressed by hash, so members are cached by (hash, path).
    """
    norm = str(PurePosixPath(member))
    if norm.startswith(("/", "..")) or "/../" in f"/{norm}/":
        raise NotFound(f"no file {member!r} in the bundle")
    cached = _members.get((sha256, norm))
    if cached is not None:
        return cached
    data = ctx.store.get(sha256)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            found = None
            for m in tar.getmembers():
                name = str(PurePosixPath(m.name))
                if m.isfile() and (name == norm or name.split("/", 1)[-1] == norm):
                    found = m
                    break
            if found is None or found.size > max_bytes:
                raise NotFound(f"no file {member!r} in the bundle")
            f = tar.extractfile(found)
            if f is None:
                raise NotFound(f"no file {member!r} in the bundle")
            content = f.read()
    except tarfile.TarError as exc:
        raise NotFound(f"bundle {sha256[:12]} unreadable: {exc}") from None
    _members.put((sha256, norm), content)
    return content


async def send_thumbnail(handler: Any, sha256: str, member: str) -> None:
    suffix = PurePosixPath(member).suffix.lower()
    ctype = THUMBNAIL_TYPES.get(suffix) or mimetypes.guess_type(member)[0]
    if suffix not in THUMBNAIL_TYPES or ctype is None:
        raise NotFound("thumbnail type not served")
    content = await handler.ctx.run(read_bundle_member, handler.ctx, sha256, member)
    handler.set_header("Content-Type", ctype)
    handler.set_header("Cache-Control", "private, max-age=86400")
    handler.set_header("Content-Security-Policy", "default-src 'none'; sandbox")
    handler.set_header("ETag", f'"{sha256[:32]}"')
    handler.finish(content)
