"""Where nbapps keeps its state: the data dir (catalog database + bundle store).

Default: platformdirs' per-user data dir for "nbapps"; ``NBAPPS_DATA_DIR`` overrides it, and
``--data-dir`` on the command line overrides both.

The data dir holds secrets (the cookie secret signs every session; the SQLite catalog holds
password hashes and session ids), so it is private to the gallery's OS user whatever the umask:
the folder and its private sub-folders are created 0700, the catalog files (database, ``-wal``,
``-shm``) and the cookie secret 0600 (:func:`secure_data_dir`, :func:`prepare_sqlite_file`).
Existing ones that others could read are tightened at start, with a warning in the log.

One gallery at a time uses a data dir: :func:`lock_data_dir` takes an exclusive ``flock`` on
``gallery.lock`` before anything in it is changed, so a second server is refused (NBA403)
having touched nothing; the OS drops the lock when the holder exits, even by SIGKILL.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from platformdirs import user_data_dir

from .errors import NbappsError

log = logging.getLogger("nbapps.datadir")

ENV_DATA_DIR = "NBAPPS_DATA_DIR"
ENV_DB_URL = "NBAPPS_DB_URL"
DB_FILENAME = "nbapps.db"
BUNDLES_DIRNAME = "bundles"
SECRET_FILENAME = "cookie_secret"
LOCK_FILENAME = "gallery.lock"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: folders of the data dir that only the gallery reads (runner folders, uploads, bundles)
PRIVATE_DIRS = ("runtime", "tmp", BUNDLES_DIRNAME)
#: the files SQLite keeps beside a database
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def default_data_dir() -> Path:
    """``$NBAPPS_DATA_DIR`` if set, else the user data dir (e.g. ~/.local/share/nbapps)."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return Path(user_data_dir("nbapps", appauthor=False))


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """``data_dir`` (expanded, absolute) or the default; the folder is not created here."""
    path = Path(data_dir).expanduser() if data_dir else default_data_dir()
    return path.absolute()


def default_db_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """SQLite URL of the catalog in ``data_dir``: ``sqlite:///<data_dir>/nbapps.db``."""
    return f"sqlite:///{resolve_data_dir(data_dir) / DB_FILENAME}"


def default_store_url(data_dir: str | os.PathLike[str] | None = None) -> str:
    """fsspec URL of the bundle store in ``data_dir``: ``file://<data_dir>/bundles``."""
    return f"file://{resolve_data_dir(data_dir) / BUNDLES_DIRNAME}"


def resolve_db_url(
    db_url: str | None = None, data_dir: str | os.PathLike[str] | None = None
) -> str:
    """``db_url``, else ``$NBAPPS_DB_URL``, else the SQLite file in the data dir."""
    return db_url or os.environ.get(ENV_DB_URL) or default_db_url(data_dir)


# -- permissions -----------------------------------------------------------------------------------

def tighten(path: Path, mode: int) -> bool:
    """Remove the permission bits of ``path`` beyond ``mode`` (a warning says so); True if
    changed. Missing paths and symlinks are left alone."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    current = stat.S_IMODE(st.st_mode)
    if not current & ~mode & 0o777:
        return False
    os.chmod(path, current & mode)
    log.warning("%s was open to other users (mode %03o); now %03o", path, current,
                current & mode, extra={"path": str(path)})
    return True


def ensure_private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter: created 0700 (parents as usual), or
    tightened if it exists."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE)
    except FileExistsError:
        tighten(path, PRIVATE_DIR_MODE)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    return path


def create_private_file(path: Path) -> None:
    """An empty file at ``path`` created 0600 (atomically: a file that exists is left as it is,
    only tightened)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        tighten(path, PRIVATE_FILE_MODE)


def prepare_sqlite_file(db_path: Path) -> None:
    """Before SQLite opens ``db_path``: its folder exists (created 0700 when missing), the
    database file exists with mode 0600 (SQLite gives its ``-wal`` and ``-shm`` files the
    database's permissions), and existing catalog files are tightened."""
    if not db_path.parent.exists():
        ensure_private_dir(db_path.parent)
    create_private_file(db_path)
    for suffix in SQLITE_SUFFIXES[1:]:
        tighten(db_path.with_name(db_path.name + suffix), PRIVATE_FILE_MODE)


def secure_data_dir(data_dir: Path) -> Path:
    """Create or tighten the data dir at start: the folder and its private sub-folders 0700,
    the catalog files and the cookie secret 0600 (each change is logged)."""
    ensure_private_dir(data_dir)
    for name in PRIVATE_DIRS:  # created here, so nothing else creates them with the umask's mode
        ensure_private_dir(data_dir / name)
    for suffix in SQLITE_SUFFIXES:
        tighten(data_dir / (DB_FILENAME + suffix), PRIVATE_FILE_MODE)
    tighten(data_dir / SECRET_FILENAME, PRIVATE_FILE_MODE)
    return data_dir


# -- one gallery per data dir ----------------------------------------------------------------------

class DataDirBusy(NbappsError):
    code = "NBA403"
    http_status = 500
    exit_code = 1


class DataDirLock:
    """An exclusive hold on a data dir (see :func:`lock_data_dir`); :meth:`release` ends it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Hold ``data_dir`` for this process (``flock`` on ``gallery.lock``, pid written in it).

    Another process holding it: :class:`DataDirBusy` (NBA403), and nothing was changed (the
    lock file already exists then). The descriptor is close-on-exec, so runners never hold it.
    """
    import fcntl

    path = data_dir / LOCK_FILENAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirBusy(f"another gallery (pid {holder}) uses the data dir {data_dir}") \
            from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return DataDirLock(path, fd)
