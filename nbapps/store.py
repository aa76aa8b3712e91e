"""The bundle store: what the gallery keeps, content-addressed, through fsspec.

Three namespaces under the store's root, every object written once and never changed:

=====================================  ==========================================================
``sources/<sha[:2]>/<sha>.tar.gz``     a submitted **source** (``app.ipynb`` and the files it
                                       declares) in the canonical archive form of
                                       :func:`nbapps.bundle.pack_source`; ``sha`` is the
                                       content hash of exactly those files
                                       (:func:`nbapps.bundle.source_hash`)
``blobs/<sha[:2]>/<sha>``              what the gallery derived from a source (check reports,
                                       executed notebooks, thumbnails, contracts); ``sha`` is
                                       the SHA-256 of the bytes
``<sha[:2]>/<sha>.nbapp``              *legacy*: whole client archives stored by earlier
                                       nbapps; only their source files are ever read
                                       (:meth:`BundleStore.read_source`)
=====================================  ==========================================================

So the address covers every byte stored and served, and no upload can change what another
submission of the same address gets (DESIGN.md decision 7): :meth:`BundleStore.put_source` and
:meth:`BundleStore.put_blob` never overwrite; an object already stored under a key is kept only
if it is what the key says (a source whose files hash to it, a blob whose bytes do; a source
archive written by another zlib may differ in bytes and still qualify), otherwise the put is
refused with NBA312 (the store was tampered with).

Objects are written atomically (a temporary name in the same folder, then a link or a move).
Nothing here is served directly. Any fsspec URL works (``file://``, ``memory://``, ``s3://``
with s3fs installed...); on object stores without rename, fsspec's ``mv`` is a copy + delete.
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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
SOURCES = "sources"
SOURCE_SUFFIX = ".tar.gz"
BLOBS = "blobs"
_KEY_RE = re.compile(r"(?:(?P<source>sources/)[0-9a-f]{2}/(?P<ssha>[0-9a-f]{64})\.tar\.gz"
                     r"|(?P<blob>blobs/)[0-9a-f]{2}/(?P<bsha>[0-9a-f]{64})"
                     r"|[0-9a-f]{2}/(?P<lsha>[0-9a-f]{64})\.nbapp)")
#: largest total size of the files of one source read back from the store
MAX_SOURCE_BYTES = 1024 * 1024 * 1024


class StoreError(NbappsError):
    code = "NBA312"
    http_status = 500
    exit_code = 1


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.fullmatch(sha256):
        raise BundleError(f"not a SHA-256 hex digest: {sha256!r}", code="NBA201")
    return sha256


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class SourceFiles:
    """The source of a version: ``{path: bytes}`` (``app.ipynb`` and its declared files)."""

    files: dict[str, bytes]
    #: content hash of ``files`` (:func:`nbapps.bundle.source_hash`)
    sha256: str
    #: the store key it was read from
    key: str
    #: read out of a legacy client archive (so not yet stored as a source object)
    legacy: bool = False

    @property
    def size(self) -> int:
        return sum(len(d) for d in self.files.values())


@dataclass(frozen=True)
class StoredSource:
    """Where :meth:`BundleStore.put_source` put a source."""

    sha256: str
    key: str
    size: int


class BundleStore:
    """Sources, blobs and legacy bundles under the fsspec ``url`` (default
    ``file://<data_dir>/bundles``)."""

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
        """Key of a legacy bundle archive: ``ab/abcdef....nbapp``."""
        _check_sha(sha256)
        return f"{sha256[:2]}/{sha256}{SUFFIX}"

    @staticmethod
    def source_key(sha256: str) -> str:
        """Key of a source object: ``sources/ab/abcdef....tar.gz``."""
        _check_sha(sha256)
        return f"{SOURCES}/{sha256[:2]}/{sha256}{SOURCE_SUFFIX}"

    @staticmethod
    def blob_key(sha256: str) -> str:
        """Key of a derived blob: ``blobs/ab/abcdef...``."""
        _check_sha(sha256)
        return f"{BLOBS}/{sha256[:2]}/{sha256}"

    @staticmethod
    def is_source_key(key: str) -> bool:
        m = _KEY_RE.fullmatch(key or "")
        return bool(m and m.group("source"))

    def _path_of(self, key: str) -> str:
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            raise BundleError(f"not a store key: {key!r}", code="NBA201")
        return f"{self.root}/{key}"

    def _path(self, sha256: str) -> str:
        return self._path_of(self.key_for(sha256))

    # -- generic objects -------------------------------------------------------------------

    def exists_key(self, key: str) -> bool:
        return bool(self.fs.exists(self._path_of(key)))

    def get_key(self, key: str) -> bytes:
        """An object's bytes; NotFound NBA302."""
        try:
            with self.fs.open(self._path_of(key), "rb") as f:
                return bytes(f.read())
        except FileNotFoundError:
            raise NotFound(f"{key} is not in the store") from None

    def _put_key(self, key: str, data: bytes, acceptable: Callable[[bytes], bool]) -> str:
        """Write ``data`` under ``key`` once. An object already there stays: if its bytes
        differ it must pass ``acceptable`` (it is what the key says), else StoreError NBA312."""
        path = self._path_of(key)
        if self.fs.exists(path):
            self._check_existing(path, data, key, acceptable)
            return key
        folder = path.rsplit("/", 1)[0]
        self.fs.makedirs(folder, exist_ok=True)
        if self._is_local():
            self._put_local(path, data, key, acceptable)
        else:
            tmp = f"{folder}/.tmp-{secrets.token_hex(8)}"
            try:
                with self.fs.open(tmp, "wb") as f:
                    f.write(data)
                if self.fs.exists(path):  # lost a race with another writer
                    self._check_existing(path, data, key, acceptable)
                else:
                    self.fs.mv(tmp, path)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
        log.debug("stored %s (%d bytes)", key, len(data))
        return key

    def _is_local(self) -> bool:
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols

    def _put_local(self, path: str, data: bytes, key: str,
                   acceptable: Callable[[bytes], bool]) -> None:
        """Local files: fsync'd temp file, then ``os.link`` (fails if the name exists, so an
        existing object is never replaced, even by a concurrent writer)."""
        folder = os.path.dirname(path)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            try:
                os.link(tmp, path)
            except FileExistsError:
                self._check_existing(path, data, key, acceptable)
            else:
                fsync_dir(folder)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _check_existing(self, path: str, data: bytes, key: str,
                        acceptable: Callable[[bytes], bool]) -> None:
        with self.fs.open(path, "rb") as f:
            existing = bytes(f.read())
        if existing == data:
            return
        try:
            ok = acceptable(existing)
        except NbappsError:
            ok = False
        if not ok:
            raise StoreError(f"{key} is already stored with other content; refusing to "
                             "overwrite it (the store was changed outside nbapps)")
        log.debug("%s already stored (other bytes, same content); kept", key)

    # -- sources ---------------------------------------------------------------------------

    def put_source(self, files: Mapping[str, bytes]) -> StoredSource:
        """Store source files (``{path: bytes}``) as their canonical archive under their
        content hash; an identical source already stored is kept (see the module docstring)."""
        from .bundle import pack_source, source_hash

        files = dict(files)
        digest = source_hash(files)
        data = pack_source(files)
        key = self._put_key(self.source_key(digest), data,
                            lambda existing: self._source_hash_of(existing) == digest)
        return StoredSource(digest, key, len(data))

    @staticmethod
    def _source_hash_of(archive: bytes) -> str:
        from .bundle import source_hash, unpack_source

        return source_hash(unpack_source(archive, MAX_SOURCE_BYTES))

    def read_source(self, sha256: str, key: str | None = None) -> SourceFiles:
        """The source files of the object ``key`` (default: the source object of ``sha256``,
        else the legacy archive of ``sha256``).

        A source object must hold files whose content hash is ``sha256`` (BundleError NBA202
        otherwise). Of a legacy client archive only ``app.ipynb`` and the files it declares are
        read; their hash is returned (it need not be ``sha256``, which the client computed).
        NotFound NBA302 when there is no such object.
        """
        from .bundle import read_source_folder, source_hash, unpack_bundle, unpack_source

        _check_sha(sha256)
        if key is None:
            key = self.source_key(sha256)
            if not self.exists_key(key):
                key = self.key_for(sha256)
        data = self.get_key(key)
        if self.is_source_key(key):
            files = unpack_source(data, MAX_SOURCE_BYTES)
            digest = source_hash(files)
            if digest != sha256:
                raise BundleError(f"stored source {sha256} holds content {digest}",
                                  code="NBA202")
            return SourceFiles(files, digest, key)
        with tempfile.TemporaryDirectory(prefix="nbapps-legacy-") as tmp:
            folder = unpack_bundle(data, Path(tmp) / "b", max_bytes=MAX_SOURCE_BYTES)
            files = read_source_folder(folder)
        return SourceFiles(files, source_hash(files), key, legacy=True)

    def extract_source(self, sha256: str, dest_dir: str | os.PathLike[str],
                       key: str | None = None) -> SourceFiles:
        """Write the source files of ``sha256`` (see :meth:`read_source`) into ``dest_dir``
        (must not exist, or be an empty folder; NBA205 otherwise), through a temporary folder
        renamed at the end."""
        source = self.read_source(sha256, key)
        dest = Path(dest_dir)
        if dest.is_dir() and not dest.is_symlink():
            if any(dest.iterdir()):
                raise BundleError(f"extraction folder {dest} is not empty", code="NBA205")
            dest.rmdir()
        elif dest.exists() or dest.is_symlink():
            raise BundleError(f"{dest} exists and is not an empty folder", code="NBA205")
        dest.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".nbapps-source-", dir=dest.parent))
        try:
            for name, data in source.files.items():
                target = work / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            os.rename(work, dest)
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
        return source

    # -- blobs -----------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> str:
        """Store derived bytes under their SHA-256 (returned)."""
        digest = sha256_of(data)
        self._put_key(self.blob_key(digest), data, lambda existing: sha256_of(existing) == digest)
        return digest

    def get_blob(self, sha256: str) -> bytes:
        """A blob's bytes, checked against their address (NBA312 if they do not match)."""
        data = self.get_key(self.blob_key(sha256))
        if sha256_of(data) != sha256:
            raise StoreError(f"blob {sha256} does not hold what its address says")
        return data

    def has_blob(self, sha256: str) -> bool:
        return self.exists_key(self.blob_key(sha256))

    # -- legacy bundle archives ------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def put(self, sha256: str, data: bytes, *, strict: bool = True) -> str:
        """Store a whole bundle archive under ``sha256`` once (the layout of earlier nbapps;
        imports and tests). Never overwrites: an object already stored with other bytes is
        kept only if it is what the key says (its bytes or its source files hash to
        ``sha256``), else StoreError NBA312. ``strict`` is accepted for compatibility."""
        del strict

        def acceptable(existing: bytes) -> bool:
            if sha256_of(existing) == sha256:
                return True
            from .bundle import read_source_folder, source_hash, unpack_bundle

            with tempfile.TemporaryDirectory(prefix="nbapps-legacy-") as tmp:
                folder = unpack_bundle(existing, Path(tmp) / "b", max_bytes=MAX_SOURCE_BYTES)
                return bool(source_hash(read_source_folder(folder)) == sha256)

        return self._put_key(self.key_for(sha256), data, acceptable)

    def get(self, sha256: str) -> bytes:
        """The legacy archive bytes; NotFound NBA302."""
        return self.get_key(self.key_for(sha256))

    def size(self, sha256: str) -> int:
        try:
            return int(self.fs.size(self._path(sha256)))
        except FileNotFoundError:
            raise NotFound(f"bundle {sha256} is not in the store") from None


def open_store(url: str | None = None, data_dir: str | os.PathLike[str] | None = None
               ) -> BundleStore:
    """The store at ``url`` or the default ``file://<data_dir>/bundles``."""
    return BundleStore(url or default_store_url(data_dir))
