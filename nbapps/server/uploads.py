"""Receiving a submission: the uploaded archive, checked and recorded.

Upload pipeline (:func:`accept_upload`, on the thread pool): the body was spooled to a file under
``<data_dir>/tmp/uploads`` while it arrived (size-limited); it is unpacked into a private temp
folder with :func:`nbapps.bundle.unpack_bundle` (size limit, no links, no paths outside),
checked with :func:`nbapps.bundle.verify_bundle` (manifest schema, every file's hash), its
notebook validated again statically, the archive stored by hash in the bundle store, and only
then recorded by :meth:`Catalog.submit` in one transaction. A crash at any point before that
transaction leaves nothing visible: temp files are removed at the next start and a stored but
unrecorded archive is unreachable (and reused by the next identical upload).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..catalog import Submission, slugify
from ..errors import BundleError, NotebookError
from .identity import WebUser

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server.uploads")


def _bundle_api() -> Any:
    try:
        from .. import bundle
    except ImportError as exc:  # pragma: no cover - the bundle module is part of nbapps
        raise BundleError("bundle support is not installed", code="NBA201") from exc
    return bundle


def _manifest_of(verified: Any, folder: Path) -> dict[str, Any]:
    manifest = getattr(verified, "manifest", None)
    if isinstance(manifest, dict):
        return manifest
    if isinstance(verified, dict):
        return verified
    import json

    try:
        return dict(json.loads((folder / "manifest.json").read_text("utf-8")))
    except (OSError, ValueError) as exc:
        raise BundleError(f"bundle manifest unreadable: {exc}", code="NBA201") from None


def _sha_of(verified: Any, manifest: dict[str, Any]) -> str:
    for source in (getattr(verified, "sha256", None), manifest.get("sha256"),
                   manifest.get("bundle_sha256")):
        if isinstance(source, str) and len(source) == 64:
            return source
    raise BundleError("bundle has no content hash", code="NBA201")


def _app_meta(manifest: dict[str, Any]) -> dict[str, Any]:
    app = manifest.get("app")
    meta: dict[str, Any] = dict(app) if isinstance(app, dict) else {}
    for key in ("title", "description", "tags", "thumbnail", "slug"):
        if key not in meta and key in manifest:
            meta[key] = manifest[key]
    return meta


def _notebook_in(folder: Path, manifest: dict[str, Any]) -> Path:
    from .review_data import notebook_member

    path = (folder / notebook_member(manifest)).resolve()
    if folder.resolve() not in path.parents or not path.is_file():
        raise BundleError("the manifest's notebook is not in the bundle", code="NBA201")
    return path


def accept_upload(ctx: ServerContext, user: WebUser, spool: Path, *, slug: str | None,
                  ip: str | None) -> Submission:
    """Check the uploaded archive at ``spool`` and record it (see the module docstring)."""
    bundle = _bundle_api()
    data = spool.read_bytes()
    if not data:
        raise BundleError("the request body is empty: send the bundle archive (tar.gz)",
                          code="NBA204")
    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=ctx.upload_dir))
    try:
        dest = work / "bundle"
        bundle.unpack_bundle(data, dest, max_bytes=ctx.options.max_unpacked_bytes)
        verified = bundle.verify_bundle(dest)
        manifest = _manifest_of(verified, dest)
        sha256 = _sha_of(verified, manifest)
        notebook = _notebook_in(dest, manifest)
        _check_notebook(notebook)
        meta = _app_meta(manifest)
        title = str(meta.get("title") or "").strip()
        if not title:
            raise BundleError("the bundle manifest has no app title", code="NBA201")
        app_slug = slug or str(meta.get("slug") or "") or slugify(title)
        tags = meta.get("tags") or []
        if not isinstance(tags, (list, tuple)):
            raise BundleError("manifest tags must be a list", code="NBA201")
        thumbnail = meta.get("thumbnail")
        if thumbnail is not None and not isinstance(thumbnail, str):
            thumbnail = None
        if not ctx.store.exists(sha256):
            ctx.store.put(sha256, data)
        key = ctx.store.key_for(sha256)
        return ctx.catalog.submit(
            slug=app_slug, title=title, description=str(meta.get("description") or ""),
            tags=[str(t) for t in tags], sha256=sha256, manifest=manifest, store_key=key,
            submitter=user.name, thumbnail=thumbnail, size=len(data), ip=ip,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_notebook(path: Path) -> None:
    """Static validation on the server (no execution); error findings refuse the upload."""
    from ..validate import ValidationSettings, validate_notebook

    report = validate_notebook(path, ValidationSettings(execute=False), name=path.name)
    # NBA011 (kernel not installed here) is the runners' concern, not a reason to refuse
    errors = [f for f in report.findings if f.is_error and f.code != "NBA011"]
    if errors:
        raise NotebookError(
            f"the notebook has {len(errors)} error(s): "
            + "; ".join(f"{f.code} {f.message}" for f in errors[:5]),
            code="NBA200", details={"findings": [f.to_dict() for f in errors]},
        )


def clean_upload_dir(ctx: ServerContext) -> int:
    """Remove what an interrupted upload left (called at start); returns entries removed."""
    folder = ctx.upload_dir
    removed = 0
    if folder.exists():
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    folder.mkdir(parents=True, exist_ok=True)
    return removed


__all__ = ["accept_upload", "clean_upload_dir"]
