"""The data dir is private to the gallery's OS user whatever the umask: the folder and its private
sub-folders 0700, the catalog files (db, -wal, -shm) and the cookie secret 0600; open ones are
tightened at start, with a log line."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from pathlib import Path

from nbapps.catalog import open_catalog
from tests.server_harness import start_process, stop_process


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_catalog_is_private_under_umask_022(tmp_path):
    """What every command does (``nbapps user create`` creates the catalog too)."""
    db = tmp_path / "fresh" / "nbapps.db"
    with umask(0o022):
        cat = open_catalog(f"sqlite:///{db}")
        try:
            cat.create_user("ana", "analyst", None, actor="t")  # the WAL files exist now
            assert mode(db.parent) == 0o700
            for name in ("nbapps.db", "nbapps.db-wal", "nbapps.db-shm"):
                assert mode(db.parent / name) == 0o600, name
        finally:
            cat.close()


def _gallery_files(data_dir: Path) -> dict[str, int]:
    names = ["", "nbapps.db", "nbapps.db-wal", "nbapps.db-shm", "cookie_secret", "tmp",
             "runtime", "bundles"]
    return {name or ".": mode(data_dir / name) for name in names if (data_dir / name).exists()}


def test_the_gallery_creates_its_data_dir_private_under_umask_022(tmp_path):
    data_dir = tmp_path / "data"
    with umask(0o022):  # inherited by the server process
        proc, _ = start_process(data_dir, f"sqlite:///{data_dir / 'nbapps.db'}")
    try:
        found = _gallery_files(data_dir)
    finally:
        stop_process(proc)
    assert found == {".": 0o700, "nbapps.db": 0o600, "nbapps.db-wal": 0o600,
                     "nbapps.db-shm": 0o600, "cookie_secret": 0o600, "tmp": 0o700,
                     "runtime": 0o700, "bundles": 0o700}


def test_open_files_of_an_older_data_dir_are_tightened_at_start(tmp_path):
    data_dir = tmp_path / "data"
    open_catalog(f"sqlite:///{data_dir / 'nbapps.db'}").close()
    (data_dir / "cookie_secret").write_text("s" * 64)
    (data_dir / "bundles").mkdir()
    for path, m in [(data_dir, 0o755), (data_dir / "nbapps.db", 0o644),
                    (data_dir / "cookie_secret", 0o644), (data_dir / "bundles", 0o755)]:
        os.chmod(path, m)
    proc, _ = start_process(data_dir, f"sqlite:///{data_dir / 'nbapps.db'}")
    try:
        found = _gallery_files(data_dir)
        log = "".join(proc.log_lines)  # type: ignore[attr-defined]
    finally:
        stop_process(proc)
    assert found["."] == 0o700 and found["bundles"] == 0o700
    assert found["nbapps.db"] == 0o600 and found["cookie_secret"] == 0o600
    assert log.count("was open to other users") >= 4, log
    assert f"{data_dir / 'cookie_secret'} was open to other users (mode 644); now 600" in log
