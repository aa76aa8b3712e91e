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

Blobs of runs deleted by retention are removed when nothing else names them
(:meth:`BundleStore.delete_blob`); an operator's ``nbapps store gc`` (:mod:`nbapps.store_gc`)
removes old objects no catalog row names; nothing else is ever deleted.

So the address covers every byte stored and served, and no upload can change what another
submission of the same address gets (DESIGN.md decision 7): :meth:`BundleStore.put_source` and
:meth:`BundleStore.put_blob` never overwrite; an object already stored under a key is kept only
if it is what the key says (a source whose files hash to it, a blob whose bytes do; a source
archive written by another zlib may differ in bytes and still qualify), otherwise the put is
refused with NBA312 (the store was tampered with).

Objects are written atomically, each the way its backend allows:

- local folders: an fsync'd temporary file in the same folder, then ``os.link`` to the final
  name (fails if the name exists, so nothing is ever replaced);
- object stores whose PUT is atomic (:data:`DIRECT_PUT_PROTOCOLS`: S3, GCS, ``memory://``):
  the final key is written once, directly, as an exclusive create (S3's ``If-None-Match: *``:
  a concurrent writer of the same key gets "exists" and its bytes are compared instead). A
  temporary object and a move would be a second upload there (a move is a copy + delete);
- any other fsspec backend: a temporary name, then a move.

Nothing here is served directly. Any fsspec URL works (``file://``, ``memory://``, ``s3://``
with ``nbapps[s3]``...), with its storage options (``c.NbappsServer.store_options`` or
``$NBAPPS_STORE_OPTIONS``: endpoint, credentials, region...; :func:`resolve_store`).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
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
#: fsspec protocols whose object PUT is atomic (readers see the old state or the whole object):
#: objects are written once under their final key there, never as a temporary + move
DIRECT_PUT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "memory"})
#: environment variables read when the configuration does not set the store
ENV_STORE_URL = "NBAPPS_STORE_URL"
ENV_STORE_OPTIONS = "NBAPPS_STORE_OPTIONS"


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


@dataclass(frozen=True)
class StoredObject:
    """A file under the store's root as listed (:meth:`BundleStore.iter_objects`)."""

    #: path under the root (a store key, a ``.tmp-*`` leftover of a write, anything else)
    key: str
    size: int
    #: last modification (UTC); None when the backend tells none
    modified: datetime | None


class BundleStore:
    """Sources, blobs and legacy bundles under the fsspec ``url`` (default
    ``file://<data_dir>/bundles``)."""

    def __init__(self, url: str | None = None, *, direct_put: bool | None = None,
                 **storage_options: Any) -> None:
        """``storage_options`` go to fsspec (s3fs: ``endpoint_url``, ``key``, ``secret``,
        ``anon``, ``client_kwargs``...). ``direct_put``: write objects straight under their
        final key (default: when the backend's PUT is atomic, :data:`DIRECT_PUT_PROTOCOLS`);
        False forces temporary + move (the behaviour before, for comparisons)."""
        self.url = url or default_store_url()
        fs, root = url_to_fs(self.url, **storage_options)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/") or "/"
        self.fs.makedirs(self.root, exist_ok=True)
        if direct_put is None:
            direct_put = bool(DIRECT_PUT_PROTOCOLS & set(self._protocols()))
        self.direct_put = direct_put and not self._is_local()

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

    @staticmethod
    def classify_key(key: str) -> tuple[str, str] | None:
        """``(kind, sha256)`` of a store key, kind ``source``, ``blob`` or ``legacy``; None for
        anything else."""
        m = _KEY_RE.fullmatch(key or "")
        if m is None:
            return None
        if m.group("source"):
            return "source", m.group("ssha")
        if m.group("blob"):
            return "blob", m.group("bsha")
        return "legacy", m.group("lsha")

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
        if self.direct_put:
            self._put_direct(path, data, key, acceptable)
            log.debug("stored %s (%d bytes)", key, len(data))
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

    def _protocols(self) -> tuple[str, ...]:
        protocol = self.fs.protocol
        return (protocol,) if isinstance(protocol, str) else tuple(protocol)

    def _is_local(self) -> bool:
        protocols = self._protocols()
        return "file" in protocols or "local" in protocols

    def _put_direct(self, path: str, data: bytes, key: str,
                    acceptable: Callable[[bytes], bool]) -> None:
        """One PUT of the final key, as an exclusive create: an object that appeared since
        the caller looked (another writer) is compared instead, never replaced. A backend
        that ignores the condition (some S3-compatible servers) overwrites it: the caller's
        check just before keeps that window small."""
        try:
            if self._exclusive_put:
                self.fs.pipe_file(path, data, mode="create")
            else:
                self.fs.pipe_file(path, data)
        except FileExistsError:
            self._check_existing(path, data, key, acceptable)
        except (TypeError, OSError) as exc:
            # a backend without exclusive create: an fsspec implementation that takes no
            # ``mode`` (TypeError), an S3-compatible server answering 501 (ENOSYS)
            if not self._exclusive_put or not (
                    isinstance(exc, TypeError) and "mode" in str(exc)
                    or isinstance(exc, OSError) and exc.errno == errno.ENOSYS):
                raise
            log.warning("the bundle store %s has no exclusive create; objects are written "
                        "after a look only", self.url)
            self._exclusive_put = False
            self._put_direct(path, data, key, acceptable)

    #: whether the backend takes exclusive creates (False after it refused one)
    _exclusive_put = True

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

    @classmethod
    def matches_key(cls, key: str, data: bytes) -> bool:
        """Whether ``data`` is what the store key ``key`` says it is: a source archive whose
        files hash to the key's hash, a blob whose bytes do, a legacy archive whose bytes or
        source files do. Unreadable archives are not."""
        m = _KEY_RE.fullmatch(key or "")
        if m is None:
            raise BundleError(f"not a store key: {key!r}", code="NBA201")
        try:
            if m.group("source"):
                return cls._source_hash_of(data) == m.group("ssha")
            if m.group("blob"):
                return sha256_of(data) == m.group("bsha")
            return cls._legacy_archive_of(data, m.group("lsha"))
        except NbappsError:
            return False

    @staticmethod
    def _legacy_archive_of(data: bytes, sha256: str) -> bool:
        if sha256_of(data) == sha256:
            return True
        from .bundle import read_source_folder, source_hash, unpack_bundle

        with tempfile.TemporaryDirectory(prefix="nbapps-legacy-") as tmp:
            folder = unpack_bundle(data, Path(tmp) / "b", max_bytes=MAX_SOURCE_BYTES)
            return bool(source_hash(read_source_folder(folder)) == sha256)

    def verify_key(self, key: str) -> int:
        """Read the object ``key`` and check that it is what its key says
        (:meth:`matches_key`); returns its size. NotFound NBA302 when it is missing,
        StoreError NBA312 when its bytes are not what the key says."""
        data = self.get_key(key)
        if not self.matches_key(key, data):
            raise StoreError(f"{key} does not hold what its address says")
        return len(data)

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
        key = self.source_key(digest)
        self._put_key(key, data, lambda existing: self.matches_key(key, existing))
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
        key = self.blob_key(digest)
        self._put_key(key, data, lambda existing: self.matches_key(key, existing))
        return digest

    def get_blob(self, sha256: str) -> bytes:
        """A blob's bytes, checked against their address (NBA312 if they do not match)."""
        data = self.get_key(self.blob_key(sha256))
        if sha256_of(data) != sha256:
            raise StoreError(f"blob {sha256} does not hold what its address says")
        return data

    def has_blob(self, sha256: str) -> bool:
        return self.exists_key(self.blob_key(sha256))

    def delete_blob(self, sha256: str) -> None:
        """Remove a blob nothing names any more (the caller checked: runs deleted by
        retention, :meth:`nbapps.runs.pool.RunPool.forget_blobs`). A blob already gone is not
        an error. Sources and legacy archives are never deleted here."""
        path = self._path_of(self.blob_key(sha256))
        try:
            if self._is_local():
                os.unlink(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            return
        log.debug("deleted blob %s", sha256)

    # -- listing ---------------------------------------------------------------------------

    def iter_objects(self) -> Iterator[StoredObject]:
        """Every file under the root with its size and modification time, in key order: the
        objects, leftovers of interrupted writes (``.tmp-*``) and anything else put there
        (``nbapps store gc``). One recursive listing (S3: pages of 1000 keys), fresh (not
        fsspec's listing cache)."""
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.root)
        prefix = self.root if self.root.endswith("/") else self.root + "/"
        listing = self.fs.find(self.root, detail=True)
        for path, info in sorted(listing.items()):
            if info.get("type", "file") != "file" or not str(path).startswith(prefix):
                continue
            yield StoredObject(str(path)[len(prefix):], int(info.get("size") or 0),
                               _modified(info))

    def remove(self, key: str) -> bool:
        """Delete the file ``key`` of :meth:`iter_objects` (``nbapps store gc`` decided nothing
        names it); False when it is already gone."""
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise BundleError(f"not a path under the store: {key!r}", code="NBA201")
        try:
            self.fs.rm_file(f"{self.root.rstrip('/')}/{key}")
        except FileNotFoundError:
            return False
        return True

    # -- legacy bundle archives ------------------------------------------------------------

    def exists(self, sha256: str) -> bool:
        return bool(self.fs.exists(self._path(sha256)))

    def put(self, sha256: str, data: bytes, *, strict: bool = True) -> str:
        """Store a whole bundle archive under ``sha256`` once (the layout of earlier nbapps;
        imports and tests). Never overwrites: an object already stored with other bytes is
        kept only if it is what the key says (its bytes or its source files hash to
        ``sha256``), else StoreError NBA312. ``strict`` is accepted for compatibility."""
        del strict
        key = self.key_for(sha256)
        return self._put_key(key, data, lambda existing: self.matches_key(key, existing))

    def get(self, sha256: str) -> bytes:
        """The legacy archive bytes; NotFound NBA302."""
        return self.get_key(self.key_for(sha256))

    def size(self, sha256: str) -> int:
        try:
            return int(self.fs.size(self._path(sha256)))
        except FileNotFoundError:
            raise NotFound(f"bundle {sha256} is not in the store") from None


def _modified(info: Mapping[str, Any]) -> datetime | None:
    """The modification time in an fsspec listing entry (each backend names it its own way:
    local ``mtime``, s3fs ``LastModified``, gcsfs ``updated``, memory ``created``)."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return datetime.fromtimestamp(float(value), timezone.utc)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def resolve_store(url: str | None = None, options: Mapping[str, Any] | None = None,
                  data_dir: str | os.PathLike[str] | None = None
                  ) -> tuple[str, dict[str, Any]]:
    """The store's URL and fsspec storage options: ``url``, else ``$NBAPPS_STORE_URL``, else
    ``file://<data_dir>/bundles``; ``options`` when given (even empty), else
    ``$NBAPPS_STORE_OPTIONS`` (a JSON object), else none. StoreError NBA312 when the variable
    is not a JSON object."""
    url = url or os.environ.get(ENV_STORE_URL) or default_store_url(data_dir)
    if options is None:
        text = os.environ.get(ENV_STORE_OPTIONS, "").strip()
        options = parse_store_options(text, f"${ENV_STORE_OPTIONS}") if text else {}
    return url, dict(options)


def parse_store_options(text: str, where: str) -> dict[str, Any]:
    """Storage options given as a JSON object (``where`` names the source in the error)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"{where} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise StoreError(f"{where} must be a JSON object of fsspec storage options")
    return value


def open_store(url: str | None = None, data_dir: str | os.PathLike[str] | None = None,
               options: Mapping[str, Any] | None = None) -> BundleStore:
    """The store at ``url`` (default: :func:`resolve_store`) with its storage options."""
    url, storage_options = resolve_store(url, options, data_dir)
    return BundleStore(url, **storage_options)
