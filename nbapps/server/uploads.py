"""Receiving a submission: the uploaded archive, reduced to its source, stored and queued.

Upload pipeline (:func:`accept_upload`, on the thread pool). The body was spooled to a file
under ``<data_dir>/tmp/uploads`` while it arrived (size-limited); then:

1. it is unpacked into a private temp folder with :func:`nbapps.bundle.unpack_bundle` (size
   limit, no links, no paths outside). Both forms clients send are accepted: a source archive
   (``nbapps publish``) and a whole bundle (``nbapps bundle``, older clients), whose
   ``manifest.json`` is then checked for integrity (:func:`nbapps.bundle.verify_bundle`) and
   otherwise only kept as the client's claim;
2. the **trusted input** is taken out of it: ``app.ipynb`` at the root and the data files that
   notebook declares (:func:`nbapps.bundle.read_source_folder`). Nothing else of the upload
   (manifest, executed notebook, thumbnail, extra files) is used (DESIGN.md decision 7);
3. the notebook is checked statically (error findings refuse the upload, NBA200: a notebook
   that cannot run is not queued);
4. the source is stored as a canonical, content-addressed source object
   (:meth:`nbapps.store.BundleStore.put_source`), its manifest derived by the gallery
   (:func:`nbapps.jobs.source.derive_manifest`);
5. the version is recorded by :meth:`Catalog.submit` in one transaction with its queued check
   job (state ``validating``; NBA322 when the queue is full), and an idle check worker is woken.

A crash at any point before that transaction leaves nothing visible: temp files are removed at
the next start and a stored but unrecorded source is unreachable (and reused by the next
identical upload).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bundle import APP_NOTEBOOK, MANIFEST, read_source_folder, unpack_bundle, verify_bundle
from ..catalog import Submission, slugify
from ..errors import BundleError, NotebookError
from ..jobs.source import client_claim, derive_manifest
from .identity import WebUser

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server.uploads")


def _claim_of(folder: Path) -> dict[str, Any] | None:
    """The client's claim from a whole bundle's manifest (checked for integrity first: a
    damaged bundle is refused as before, NBA201/NBA202), or None for a source archive."""
    if not (folder / MANIFEST).exists():
        return None
    manifest = verify_bundle(folder)
    return client_claim(manifest)


def accept_upload(ctx: ServerContext, user: WebUser, spool: Path, *, slug: str | None,
                  ip: str | None) -> Submission:
    """Reduce the uploaded archive at ``spool`` to its source and record it (see the module
    docstring)."""
    data = spool.read_bytes()
    if not data:
        raise BundleError("the request body is empty: send the app's archive (tar.gz)",
                          code="NBA204")
    work = Path(tempfile.mkdtemp(prefix="unpack-", dir=ctx.upload_dir))
    try:
        upload = work / "upload"
        unpack_bundle(data, upload, max_bytes=ctx.options.max_unpacked_bytes)
        claim = _claim_of(upload)
        files = read_source_folder(upload)
        source = work / "source"
        for name, content in files.items():
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        _check_notebook(source / APP_NOTEBOOK)
        stored = ctx.store.put_source(files)
        manifest = derive_manifest(files, stored, claim=claim)
        title = str(manifest.get("title") or "").strip() or (slug or "")
        if not title:
            raise BundleError("the notebook has no title: set metadata.nbapps.title, or give "
                              "the app a slug", code="NBA207")
        checks = ctx.checks
        submission = ctx.catalog.submit(
            slug=slug or slugify(title), title=title,
            description=str(manifest.get("description") or ""),
            tags=[str(t) for t in manifest.get("tags") or []], sha256=stored.sha256,
            manifest=manifest, store_key=stored.key, submitter=user.name, thumbnail=None,
            size=stored.size, ip=ip, check=True,
            max_queued=checks.queue_max if checks is not None else None,
        )
        if checks is not None and submission.created:
            checks.notify()
        return submission
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_notebook(path: Path) -> None:
    """Static validation on the server (no execution); error findings refuse the upload."""
    from ..validate import ValidationSettings, validate_notebook

    report = validate_notebook(path, ValidationSettings(execute=False), name=path.name)
    # NBA011 (kernel not installed here) is for the check run to report, not a reason to refuse
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
