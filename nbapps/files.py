"""Files and folders: atomic writes (temp file in the same folder + rename, so readers never see
half of one), and the read-only folder trees that runners and checks run from."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None,
                      fsync: bool = False) -> None:
    """Replace ``path`` with ``text`` at once (a crash leaves the old file or the new one).

    ``mode``: permissions of the new file (set before it becomes visible; the temp file starts
    0600); ``fsync``: flush it to disk before the rename (for files that must survive a power
    loss, e.g. credentials).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename inside ``path`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def make_read_only(path: Path) -> None:
    """Files 0444, folders 0555 (folders last so the walk can still list them)."""
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.chmod(Path(root) / name, 0o444)
        for name in dirs:
            os.chmod(Path(root) / name, 0o555)
    os.chmod(path, 0o555)


def remove_tree(path: Path) -> None:
    """Remove a folder tree, its read-only parts included; no error if it is gone."""
    if not path.exists():
        return
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(Path(root) / name, 0o755)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)
