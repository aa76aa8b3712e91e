"""Content-addressed app bundles: build, verify, pack and unpack.

A bundle is a folder ``<slug>-<sha12>`` (``nbapps bundle NB -o DIR`` writes ``DIR/<slug>-<sha12>``;
``DIR`` can hold many bundles, one per content):

=================  ===========================================================================
``app.ipynb``      the source notebook (upgraded to nbformat 4.5, stored outputs kept as is)
data files         the declared ``metadata.nbapps.files``, at the same relative paths
``executed.ipynb`` the validation run with the default parameters
``thumbnail.png``  see :mod:`nbapps.thumbnail`
``manifest.json``  what the gallery needs: identity, per-file hashes, contract, validation
=================  ===========================================================================

**The content hash** (``manifest["sha256"]``, the bundle's identity) covers what the app *is*:
``app.ipynb`` and the data files, i.e. every ``files`` entry with ``"derived": false``. It is the
SHA-256 of the lines ``"<file sha256>  <path>\\n"`` for those files sorted by path (code point
order, as ``LC_ALL=C sort``; the format of
``sha256sum``), so it can be checked with standard tools. Files derived from a run
(``executed.ipynb``, ``thumbnail.png``) change with every run (timestamps, widget ids, random
data) and the manifest holds build times, so they are left out: bundling the same content twice
gives the same hash. They are still listed with their own hashes, and :func:`verify_bundle`
checks every file, so no file of a bundle can be changed unnoticed.

Bundles are never modified after they are written. A build happens in a hidden temporary folder
next to the destination and is renamed into place at the end; an interrupted build never leaves a
partial bundle under the expected name. Building content that is already there returns the
existing bundle.

**Sources** (what the gallery trusts, DESIGN.md decision 7): of any submitted archive the gallery
keeps only ``app.ipynb`` at the root and the data files that notebook declares
(``metadata.nbapps.files`` and ``thumbnail``, by :func:`source_names`); the manifest, the executed
notebook, a thumbnail the client made and any other file are not source. :func:`pack_source`
writes those files as a canonical archive (same files, same bytes: sorted members, no owners or
times) whose identity is :func:`source_hash`, the content hash above over exactly those files;
``nbapps publish`` uploads such an archive (:func:`pack_notebook_source`), older clients a whole
bundle: both give the same source and the same hash.
"""
from __future__ import annotations

import getpass
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import nbformat

from . import __version__
from .errors import BundleError, NbappsError, NotebookError, TooLarge
from .execute import app_files, run_app
from .files import fsync_dir
from .slugs import slugify
from .thumbnail import make_thumbnail

if TYPE_CHECKING:
    from .notebook import AppNotebook
    from .validate import Report, ValidationSettings

__all__ = [
    "BundleInfo", "build_bundle", "content_hash", "pack_bundle", "pack_notebook_source",
    "pack_source", "read_source_folder", "source_hash", "source_names", "unpack_bundle",
    "unpack_source", "verify_bundle",
]

log = logging.getLogger("nbapps.bundle")

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
APP_NOTEBOOK = "app.ipynb"
EXECUTED_NOTEBOOK = "executed.ipynb"
THUMBNAIL = "thumbnail.png"
RESERVED = frozenset({MANIFEST, APP_NOTEBOOK, EXECUTED_NOTEBOOK, THUMBNAIL})
TEMP_PREFIX = ".nbapps-bundle-"
#: Unfinished builds older than this (seconds) are removed by the next build in the same folder.
STALE_AFTER = 3600
#: Default limit for :func:`unpack_bundle` and member count limit for archives.
MAX_BYTES = 200 * 1024 * 1024
MAX_MEMBERS = 10_000
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass
class BundleInfo:
    """A bundle on disk: its folder, content hash and manifest."""

    path: Path
    sha256: str
    manifest: dict[str, Any]


# -- hashing --------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def content_hash(files: list[dict[str, Any]]) -> str:
    """The bundle hash from manifest ``files`` entries: see the module docstring."""
    source = sorted((f["path"], f["sha256"]) for f in files if not f.get("derived"))
    lines = "".join(f"{digest}  {path}\n" for path, digest in source)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def source_hash(files: Mapping[str, bytes]) -> str:
    """The content hash of source files given as ``{path: bytes}`` (:func:`content_hash`)."""
    return content_hash([{"path": name, "sha256": hashlib.sha256(data).hexdigest()}
                         for name, data in files.items()])


# -- sources --------------------------------------------------------------------------------------


def source_names(app: AppNotebook, own: str | None = APP_NOTEBOOK) -> list[str]:
    """The data files ``app`` declares that exist beside it (sorted relative paths), without the
    notebook itself (``own``) and without the names the bundle format reserves for files that
    are not source (:data:`RESERVED`)."""
    return [n for n in app_files(app) if n != own and n not in RESERVED]


def read_source_folder(folder: str | Path) -> dict[str, bytes]:
    """The source in an unpacked submission: ``app.ipynb`` and the files it declares.

    Whatever else the folder holds is not read. BundleError NBA206 when there is no
    ``app.ipynb`` at its root. A notebook that cannot be loaded declares nothing (its own
    findings say why).
    """
    from .notebook import load_notebook

    root = Path(folder)
    path = root / APP_NOTEBOOK
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"the submission has no {APP_NOTEBOOK} at its root", code="NBA206")
    files = {APP_NOTEBOOK: path.read_bytes()}
    try:
        app = load_notebook(path, name=APP_NOTEBOOK)
    except NbappsError:
        return files
    for name in source_names(app):
        files[name] = (root / name).read_bytes()
    return files


def pack_source(files: Mapping[str, bytes]) -> bytes:
    """The canonical archive of source files (tar.gz, members sorted, mode 0644, no owners,
    no times): the same files always give the same bytes with the same zlib."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            if _safe_relative(name) != name:
                raise BundleError(f"unsafe source path {name!r}", code="NBA204")
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def unpack_source(data: bytes, max_bytes: int = MAX_BYTES) -> dict[str, bytes]:
    """``{path: bytes}`` of a source archive, in memory, with :func:`unpack_bundle`'s checks
    (safe paths, regular files only, size limit)."""
    out: dict[str, bytes] = {}
    for name, reader in _members(data, max_bytes):
        out[name] = b"".join(reader)
    return out


def pack_notebook_source(notebook_path: str | Path) -> tuple[bytes, str]:
    """The source archive of a notebook as ``nbapps publish`` uploads it: ``app.ipynb`` (the
    notebook upgraded to nbformat 4.5, as :func:`build_bundle` writes it) and its declared
    files. Returns (archive, content hash). NotebookError when it cannot be loaded."""
    from .notebook import load_notebook

    path = Path(notebook_path)
    app = load_notebook(path, name=str(path))
    assert app.folder is not None
    own = path.resolve().relative_to(app.folder.resolve()).as_posix()
    files = {APP_NOTEBOOK: nbformat.writes(app.nb).encode("utf-8")}
    for name in source_names(app, own):
        files[name] = (app.folder / name).read_bytes()
    return pack_source(files), source_hash(files)


# -- building -------------------------------------------------------------------------------------


def build_bundle(
    notebook_path: str | Path,
    out_dir: str | Path,
    *,
    report: Report | None = None,
    settings: ValidationSettings | None = None,
) -> BundleInfo:
    """Validate (unless ``report`` is given) and bundle a notebook into ``out_dir``.

    Refuses with :class:`NotebookError` NBA200 (error findings in ``details``) when validation
    found errors. The executed notebook comes from the report's default-parameters run; a report
    made without running (``execute=False``) gets one run here. Raises :class:`BundleError`
    NBA205 when the destination exists and is not the same bundle.
    """
    from .validate import ValidationSettings, validate_notebook

    notebook_path = Path(notebook_path)
    out = Path(out_dir)
    settings = settings or ValidationSettings()
    if report is None:
        report = validate_notebook(notebook_path, settings)
    app = report.app
    if not report.ok or app is None:
        _refuse(notebook_path, [f.to_dict() for f in report.findings if f.is_error])
    assert app is not None
    executed = report.executed
    if executed is None:
        result = run_app(app, {}, cell_timeout=app.meta.timeout or settings.cell_timeout,
                         total_timeout=settings.total_timeout, kernel_name=settings.kernel_name)
        if not result.ok:
            _refuse(notebook_path, [f.to_dict() for f in result.findings if f.is_error])
        executed = result.nb
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out} exists and is not a folder", code="NBA205")
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    work = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=out))
    try:
        work.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the gallery and runners
        manifest = _write_contents(work, app, notebook_path, executed, report, settings)
        dest = out / f"{manifest['slug']}-{manifest['sha256'][:12]}"
        return _install(work, dest, manifest)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _refuse(path: Path, errors: list[dict[str, Any]]) -> None:
    first = errors[0]["message"] if errors else "the notebook could not be loaded"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise NotebookError(f"{path}: {len(errors) or 1} error finding(s), not bundled: "
                        f"{first}{more}", code="NBA200", details=errors)


def _write_contents(work: Path, app: AppNotebook, notebook_path: Path, executed: Any,
                    report: Report, settings: ValidationSettings) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    _write_bytes(work / APP_NOTEBOOK, nbformat.writes(app.nb).encode("utf-8"))
    files.append(_entry(work, APP_NOTEBOOK, derived=False))

    thumb_source = app.meta.thumbnail.strip().replace("\\", "/") if app.meta.thumbnail else None
    own = notebook_path.resolve().relative_to(app.folder.resolve()).as_posix() \
        if app.folder else None
    clash = sorted(n for n in app_files(app) if n != own and n != THUMBNAIL and n in RESERVED)
    names = source_names(app, own)
    if clash:
        _refuse(notebook_path, [{"code": "NBA200", "message": f"declared file `{clash[0]}` uses "
                                 "a name reserved for the bundle (" + ", ".join(sorted(RESERVED))
                                 + "); rename it"}])
    assert app.folder is not None or not names
    for name in names:
        target = work / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(app.folder / name, target)  # type: ignore[operator]
        files.append(_entry(work, name, derived=False))

    _write_bytes(work / EXECUTED_NOTEBOOK, nbformat.writes(executed).encode("utf-8"))
    files.append(_entry(work, EXECUTED_NOTEBOOK, derived=True))
    title = app.meta.title or notebook_path.stem
    source = app.folder / thumb_source if app.folder and thumb_source else None
    _write_bytes(work / THUMBNAIL, make_thumbnail(executed, title, source=source))
    files.append(_entry(work, THUMBNAIL, derived=True))

    files.sort(key=lambda f: f["path"])
    digest = content_hash(files)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "sha256": digest,
        "slug": slugify(title),
        "title": title,
        "description": app.meta.description,
        "tags": list(app.meta.tags),
        "author": _author(app, notebook_path),
        "notebook": APP_NOTEBOOK,
        "executed": EXECUTED_NOTEBOOK,
        "thumbnail": THUMBNAIL,
        "source_name": notebook_path.name,
        "files": files,
        "parameters": app.contract.to_dict(),
        "test_parameters": list(app.meta.test_parameters),
        "timeout": app.meta.timeout,
        "kernel": _kernel(app.nb, settings.kernel_name),
        "validation": _validation(report),
        "versions": _versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    _write_bytes(work / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True,
                                              ensure_ascii=False) + "\n").encode("utf-8"))
    return manifest


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)


def _entry(root: Path, name: str, *, derived: bool) -> dict[str, Any]:
    path = root / name
    return {"path": name, "sha256": file_sha256(path), "size": path.stat().st_size,
            "derived": derived}


def _author(app: AppNotebook, notebook_path: Path) -> str:
    raw = app.nb.metadata.get("nbapps")
    author = raw.get("author") if isinstance(raw, dict) else None
    if isinstance(author, str) and author.strip():
        return author.strip()
    try:
        done = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True,
                              timeout=5, cwd=notebook_path.parent if notebook_path.parent.is_dir()
                              else None, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _kernel(nb: Any, override: str | None) -> dict[str, Any]:
    spec = dict(nb.metadata.get("kernelspec") or {})
    if override:
        spec["name"] = override
    return {k: spec[k] for k in ("name", "display_name", "language") if k in spec}


def _validation(report: Report) -> dict[str, Any]:
    data = report.to_dict()
    data["path"] = Path(report.path).name  # not the author's local folders
    return {k: data[k] for k in ("path", "ok", "errors", "warnings", "duration", "findings",
                                 "runs", "notes") if k in data}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"nbapps": __version__}
    for dist in ("papermill", "voila", "ipywidgets", "nbclient", "ipykernel"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _install(work: Path, dest: Path, manifest: dict[str, Any]) -> BundleInfo:
    """Rename the finished build into place (atomic), or reuse an identical bundle there."""
    if not dest.exists():
        try:
            os.rename(work, dest)
            fsync_dir(dest.parent)
            log.info("bundle written to %s", dest)
            return BundleInfo(dest, manifest["sha256"], manifest)
        except OSError:
            if not dest.exists():
                raise
            # someone else installed the same content meanwhile: fall through and check it
    try:
        existing = verify_bundle(dest)
    except NbappsError as exc:
        raise BundleError(f"{dest} exists and is not a valid bundle ({exc.message}); remove it "
                          "or pick another output folder", code="NBA205") from None
    if existing["sha256"] != manifest["sha256"]:
        raise BundleError(f"{dest} holds another bundle", code="NBA205")
    log.info("bundle %s already exists; kept as it is", dest)
    return BundleInfo(dest, existing["sha256"], existing)


def _remove_stale(out: Path) -> None:
    """Remove unfinished builds (killed processes) older than :data:`STALE_AFTER`."""
    now = time.time()
    for leftover in out.glob(TEMP_PREFIX + "*"):
        try:
            if leftover.is_dir() and now - leftover.stat().st_mtime > STALE_AFTER:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass


# -- verifying ------------------------------------------------------------------------------------


def _safe_relative(name: Any) -> str | None:
    """``name`` as a normalised relative POSIX path, or None if it is unsafe."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        return None
    return path.as_posix()


def _check_manifest(data: Any) -> dict[str, Any]:
    def bad(why: str) -> BundleError:
        return BundleError(f"bundle manifest invalid: {why}", code="NBA201")

    if not isinstance(data, dict):
        raise bad("not a JSON object")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise bad(f"schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}")
    if not isinstance(data.get("sha256"), str) or not _HEX64.fullmatch(data["sha256"]):
        raise bad("`sha256` is not a SHA-256 hex digest")
    for key in ("title", "slug", "notebook"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise bad(f"`{key}` missing")
    files = data.get("files")
    if not isinstance(files, list) or not files:
        raise bad("`files` is not a non-empty list")
    seen: set[str] = set()
    for entry in files:
        if not isinstance(entry, dict):
            raise bad("a `files` entry is not an object")
        name = entry.get("path")
        if _safe_relative(name) != name:
            raise BundleError(f"bundle manifest names an unsafe path {name!r}", code="NBA204")
        if name in seen or name == MANIFEST:
            raise bad(f"`files` lists {name!r} twice or lists the manifest")
        seen.add(name)
        if not isinstance(entry.get("sha256"), str) or not _HEX64.fullmatch(entry["sha256"]):
            raise bad(f"`files` entry {name!r} has no valid sha256")
        size = entry.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"`files` entry {name!r} has no valid size")
        if not isinstance(entry.get("derived"), bool):
            raise bad(f"`files` entry {name!r} has no `derived` flag")
    if data["notebook"] not in seen:
        raise bad(f"the notebook {data['notebook']!r} is not in `files`")
    return data


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check a bundle folder against its manifest; returns the manifest.

    :class:`BundleError` NBA201 manifest missing, unreadable or of the wrong schema; NBA202 a file
    missing, extra, or with another size or hash, or a content hash that does not match; NBA204 a
    link, a special file or a path escaping the bundle.
    """
    root = Path(path)
    mpath = root / MANIFEST
    if root.is_symlink() or not root.is_dir():
        raise BundleError(f"{root} is not a bundle folder", code="NBA201")
    if mpath.is_symlink():
        raise BundleError("manifest.json is a link", code="NBA204")
    try:
        manifest = _check_manifest(json.loads(mpath.read_bytes().decode("utf-8")))
    except FileNotFoundError:
        raise BundleError(f"{root} has no manifest.json", code="NBA201") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BundleError(f"manifest.json unreadable ({type(exc).__name__})",
                          code="NBA201") from None
    present = _listing(root)
    listed = {f["path"]: f for f in manifest["files"]}
    missing = sorted(set(listed) - present)
    extra = sorted(present - set(listed) - {MANIFEST})
    if missing or extra:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"not in the manifest: {', '.join(extra[:5])}"] if extra else [])
        raise BundleError("bundle files do not match the manifest: " + "; ".join(parts),
                          code="NBA202", details={"missing": missing, "extra": extra})
    for name, entry in sorted(listed.items()):
        file = root / name
        if file.stat().st_size != entry["size"] or file_sha256(file) != entry["sha256"]:
            raise BundleError(f"{name} was modified after the bundle was built",
                              code="NBA202", details={"file": name})
    if content_hash(manifest["files"]) != manifest["sha256"]:
        raise BundleError("the bundle's content hash does not match its files", code="NBA202")
    return manifest


def _listing(root: Path) -> set[str]:
    """Relative paths of the regular files under ``root``; NBA204 for links and special files."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in dirnames + filenames:
            full = base / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise BundleError(f"bundle contains a link: {rel}", code="NBA204")
            if name in filenames:
                if not stat.S_ISREG(mode):
                    raise BundleError(f"bundle contains a special file: {rel}", code="NBA204")
                found.add(rel)
    return found


# -- archives -------------------------------------------------------------------------------------


def pack_bundle(path: str | Path) -> bytes:
    """A deterministic tar.gz of a verified bundle (members at the archive root, sorted, no
    owners or times), for upload. The same bundle always gives the same bytes."""
    root = Path(path)
    manifest = verify_bundle(root)
    names = sorted([f["path"] for f in manifest["files"]] + [MANIFEST])
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = (root / name).stat().st_size
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with (root / name).open("rb") as f:
                tar.addfile(info, f)
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def unpack_bundle(data: bytes, dest: str | Path, max_bytes: int = MAX_BYTES) -> Path:
    """Extract a bundle archive (tar, tar.gz) safely into the new folder ``dest``.

    Only regular files and folders with safe relative names are accepted (NBA204 for links,
    devices, absolute or ``..`` paths, duplicates or an unreadable archive); more than
    ``max_bytes`` of content is :class:`~nbapps.errors.TooLarge` NBA203 (counted while
    extracting, so a compression bomb stops early). Extraction goes to a temporary folder that
    is renamed to ``dest`` when complete. The result is not verified: call
    :func:`verify_bundle`.
    """
    target = Path(dest)
    if target.exists():
        raise BundleError(f"{target} already exists", code="NBA205")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".nbapps-unpack-", dir=target.parent))
    try:
        _extract(data, work, max_bytes)
        os.rename(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return target


def _extract(data: bytes, work: Path, max_bytes: int) -> None:
    for name, reader in _members(data, max_bytes):
        file = work / name
        file.parent.mkdir(parents=True, exist_ok=True)
        if file.exists():
            raise BundleError(f"archive entry {name!r} clashes with another", code="NBA204")
        with file.open("wb") as out:
            for chunk in reader:
                out.write(chunk)


def _members(data: bytes, max_bytes: int) -> Iterator[tuple[str, Iterator[bytes]]]:
    """(safe relative name, chunks) of each regular file of a tar / tar.gz archive, in archive
    order. Consume each member's chunks before asking for the next. NBA204 for links, special
    files, unsafe or duplicate names or an unreadable archive; TooLarge NBA203 past
    ``max_bytes`` of content (counted while reading, so a compression bomb stops early)."""
    total = 0
    seen: set[str] = set()

    def chunks(source: Any) -> Iterator[bytes]:
        nonlocal total
        while True:
            try:
                chunk = source.read(_CHUNK)
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise BundleError(f"bundle archive unreadable ({type(exc).__name__}: {exc})",
                                  code="NBA204") from None
            if not chunk:
                return
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge(f"bundle content is larger than the limit of "
                               f"{max_bytes // (1024 * 1024)} MB", code="NBA203")
            yield chunk

    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r|*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise BundleError(f"archive has more than {MAX_MEMBERS} entries",
                                      code="NBA204")
                name = _safe_relative(member.name.rstrip("/") if member.isdir() else member.name)
                if name is None:
                    raise BundleError(f"archive entry with an unsafe path: {member.name!r}",
                                      code="NBA204")
                if member.isdir():
                    continue
                if not member.isreg():
                    raise BundleError(f"archive entry {name!r} is a link or special file",
                                      code="NBA204")
                if name in seen:
                    raise BundleError(f"archive has {name!r} twice", code="NBA204")
                seen.add(name)
                source = tar.extractfile(member)
                assert source is not None
                yield name, chunks(source)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BundleError(f"bundle archive unreadable ({type(exc).__name__}: {exc})",
                          code="NBA204") from None
