"""The bundle store: submitted bundle archives stored by hash through fsspec.

Layout: ``<root>/<sha[:2]>/<sha>.nbapp`` (the archive bytes as uploaded), ``sha`` being the
bundle's content hash (``manifest["sha256"]``, see :mod:`nbapps.bundle`). Objects are written
once, atomically (a temporary name in the same folder, then a move), and never overwritten or
modified. Putting a hash that is already stored keeps the stored object: the content hash leaves
out files derived from a run (executed notebook, thumbnail), so a rebuild of the same content may
differ in those bytes and is still the same bundle (``strict=True`` refuses different bytes with
NBA312 instead). Nothing here is served directly; runners get an extracted, verified copy of one
approved bundle (:meth:`BundleStore.extract`).

Any fsspec URL works (``file://``, ``memory://``, ``s3://`` with s3fs installed...). On object
stores without rename, fsspec's ``mv`` is a copy + delete; the final object still appears whole.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from .datadir import default_store_url
from .errors import BundleError, NbappsError, NotFound
from .files import fsync_dir

log = logging.getLogger("nbapps.store")

_SHA_RE = re.compile(r"[0-9a-f]{64}")
SUFFIX = ".nbapp"


class StoreError(NbappsError):
    code = "NBA312"
    http_status = 500
    exit_code = 1


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
        raise BundleError(f"not a SHA-256 hex digest: {sha256!r}", code="NBA201")
    return sha256


class BundleStore:
    """Bundles by hash under the fsspec ``url`` (default ``file://<data_dir>/bundles``)."""

    def __init__(self, url: str | None = None, **storage_options: Any) -> None:
        self.url = url or default_store_url()
        fs, root = url_to_fs(self.url, **storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/") or "/"
        self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"BundleStore({self.url!r})"

    # -- keys ------------------------------------------------------------------------------

    @staticmethod
    def key_for(sha256: str) -> str:
        """Store key (relative path) of a bundle: ``ab/abcdef....nbapp``."""
        _check_sha(sha256)
        return f"{sha256[:2]}/{sha256}{SUFFIX}"

    def _path(self, sha256: str) -> str:
        return f"{self.root}/{self.key_for(sha256)}"

    # -- operations ------------------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def put(self, sha256: str, data: bytes, *, strict: bool = False) -> str:
        """Store ``data`` under ``sha256`` once; return its key. An object already stored under
        that hash is kept untouched (idempotent); with ``strict`` other bytes raise StoreError
        NBA312."""
        path = self._path(sha256)
        key = self.key_for(sha256)
        if self.fs.exists(path):
            self._check_identical(path, data, sha256, strict)
            return key
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        if self._is_local():
            self._put_local(path, data, sha256, strict)
        else:
            tmp = f"{folder}/.tmp-{secrets.token_hex(8)}-{sha256[:12]}"
            try:
                with self.fs.open(tmp, "wb") as f:
                    f.write(data)
                if self.fs.exists(path):  # lost a race with an identical upload
                    self._check_identical(path, data, sha256, strict)
                else:
                    self.fs.mv(tmp, path)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
        log.debug("stored bundle %s (%d bytes)", sha256, len(data))
        return key

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    def _put_local(self, path: str, data: bytes, sha256: str, strict: bool) -> None:
        """Local files: fsync'd temp file, then ``os.link`` (fails if the name exists, so an
        existing object is never replaced, even by a concurrent writer)."""
        folder = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=SUFFIX, dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)
            except FileExistsError:
                self._check_identical(path, data, sha256, strict)
            else:
                fsync_dir(folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _check_identical(self, path: str, data: bytes, sha256: str, strict: bool) -> None:
        if not strict:
            log.debug("bundle %s already stored; keeping the stored object", sha256)
            return
        with self.fs.open(path, "rb") as f:
            existing = f.read()
        if hashlib.sha256(existing).digest() != hashlib.sha256(data).digest():
            raise StoreError(
                f"bundle {sha256} already stored with different bytes; refusing to overwrite"
            )

    def get(self, sha256: str) -> bytes:
        """The archive bytes; NotFound NBA302."""
        path = self._path(sha256)
        try:
            with self.fs.open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"bundle {sha256} is not in the store") from None

    def size(self, sha256: str) -> int:
        try:
            return int(self.fs.size(self._path(sha256)))
        except FileNotFoundError:
            raise NotFound(f"bundle {sha256} is not in the store") from None

    def extract(self, sha256: str, dest_dir: str | os.PathLike[str], *,
                verify: bool = True) -> Path:
        """Unpack bundle ``sha256`` into ``dest_dir`` (must not exist, or be an empty folder).

        Uses :func:`nbapps.bundle.unpack_bundle` (safe paths, size limit, atomic rename) then, if
        ``verify``, :func:`~nbapps.bundle.verify_bundle` and a check that the manifest's content
        hash is ``sha256`` (BundleError NBA202 otherwise, and nothing is left at ``dest_dir``).
        """
        data = self.get(sha256)
        dest = Path(dest_dir)
        if dest.is_dir() and not dest.is_symlink():
            if any(dest.iterdir()):
                raise BundleError(f"extraction folder {dest} is not empty", code="NBA205")
            dest.rmdir()
        elif dest.exists() or dest.is_symlink():
            raise BundleError(f"{dest} exists and is not an empty folder", code="NBA205")
        from . import bundle  # imported here: the store is used by processes that never bundle

        bundle.unpack_bundle(data, dest)
        if verify:
            try:
                manifest = bundle.verify_bundle(dest)
                if manifest.get("sha256") != sha256:
                    raise BundleError(
                        f"stored bundle {sha256} holds content {manifest.get('sha256')}",
                        code="NBA202")
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
        return dest


def open_store(url: str | None = None, data_dir: str | os.PathLike[str] | None = None
               ) -> BundleStore:
    """The store at ``url`` or the default ``file://<data_dir>/bundles``."""
    return BundleStore(url or default_store_url(data_dir))
