"""Gallery replicas that act as one (issue 13.1), with real processes, PostgreSQL and kernels.

Two ``python -m nbapps.server.app`` processes, each with its own data dir, share ONE PostgreSQL
catalog, ONE bundle store (a ``file://`` folder) and ONE cookie secret (A from
``$NBAPPS_COOKIE_SECRET``, B from ``cookie_secret_file``): a login made on A is valid on B; an
approval on A and a rollback on B are served by the other replica within 5 s of the replica that
decided (both figures measured and printed). Also: a bad secret is a coded error, a refused
second server on one data dir changes no file, and ``nbapps db upgrade`` migrates alone and
idempotently.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from nbapps.catalog import open_catalog
from nbapps.catalog.db import CATALOG_CHANNEL, LIVE_CHANNEL
from nbapps.datadir import DataDirBusy, lock_data_dir
from nbapps.server.identity import CookieSecretError, resolve_cookie_secret
from nbapps.store import open_store
from tests.server_harness import (
    ROOT,
    Gallery,
    build_archive,
    catalog_of,
    new_data_dir,
    seed_users,
    seed_version,
    start_process,
    stop_process,
    thread_gallery,
)
from tests.test_app_browser import _approve_api, _submit
from tests.test_runner_fixtures import widget_app_notebook

#: a replica serves a decision made on another at most this many seconds after the deciding
#: replica itself does (issue 13.1 asks for 5 s after the decision; on PostgreSQL the other
#: replica hears of it at once, and each serves the new version 1.3-2.4 s after the decision on
#: a quiet 2-core machine, the time to start a runner with one page per pool)
FOLLOW_BOUND_S = 5.0


@contextmanager
def replica(folder: Path, db_url: str, users: dict[str, Any], args: list[str],
            env: dict[str, str] | None = None, serve_apps: bool = False) -> Iterator[Gallery]:
    data_dir = folder / "data"
    data_dir.mkdir(parents=True)
    proc, url = start_process(data_dir, db_url, args, env=env, serve_apps=serve_apps)
    try:
        yield Gallery(url=url, data_dir=data_dir, db_url=db_url, users=users, process=proc)
    except BaseException:  # the replica's own account of a failure, in the test's output
        lines = [x for x in getattr(proc, "log_lines", []) if " nbapps.access: " not in x]
        print(f"--- log of replica {folder.name}, access lines left out (last 300) ---")
        print("".join(lines[-300:]))
        raise
    finally:
        stop_process(proc)


def _app_notebook(marker: str) -> Any:
    nb = widget_app_notebook()
    nb.metadata["nbapps"].update(title="Replica app", description="Served by two replicas.")
    nb.cells[-2].source = f"## Result {marker}"  # the widget markdown cell: on the page
    # the gallery's own check wants every widget cell to display something (NBA074)
    nb.cells[-1].source += "\nfrom IPython.display import display\ndisplay('shown')"
    return nb


def publish(g: Gallery, folder: Path, marker: str) -> tuple[dict[str, Any], str]:
    """Submit the replica app showing ``marker`` to ``g`` and approve it there: (the
    submission, the app's slug)."""
    sub = _submit(g, build_archive(folder, _app_notebook(marker)))
    app = sub.get("app")
    slug = app if isinstance(app, str) else (app or {}).get("slug")
    _approve_api(g, sub["id"])
    return sub, str(slug)


def _wait_serving(g: Gallery, slug: str, marker: str, timeout: float) -> float:
    """Poll ``/apps/<slug>/`` as a viewer until the page shows ``marker``; returns the
    monotonic time it did (fails after ``timeout``)."""
    deadline = time.monotonic() + timeout
    auth = {"Authorization": f"Bearer {g.users['vic'].token}"}
    last = ""
    while True:
        r = httpx.get(f"{g.url}/apps/{slug}/", headers=auth, timeout=60)
        if r.status_code == 200 and marker in r.text:
            return time.monotonic()
        last = f"{r.status_code} {'v1' if 'REPLICA-V1' in r.text else ''}" \
               f"{'v2' if 'REPLICA-V2' in r.text else ''}"
        assert time.monotonic() < deadline, f"{g.url} does not serve {marker}: last {last}"
        time.sleep(0.2)  # polling a page over HTTP (no event to wait on)


def _listed_live(g: Gallery, slug: str) -> int:
    """The live version id of ``slug`` in the gallery listing (``/api/apps``, cached)."""
    with g.client("vic") as c:
        items = c.get("/api/apps").json()["items"]
    return int(next(i["live_version_id"] for i in items if i["slug"] == slug))


def _listed_category(g: Gallery, slug: str) -> str | None:
    """The gallery section of ``slug`` in ``g``'s (cached) listing."""
    with g.client("vic") as c:
        items = c.get("/api/apps").json()["items"]
    return next(i["category"] for i in items if i["slug"] == slug)  # type: ignore[no-any-return]


def _both_serving(a: Gallery, b: Gallery, slug: str, marker: str, timeout: float
                  ) -> tuple[float, float]:
    """:func:`_wait_serving` on both replicas at once: when each served ``marker``."""
    with ThreadPoolExecutor(2) as pool:
        on_a, on_b = (pool.submit(_wait_serving, g, slug, marker, timeout) for g in (a, b))
        return on_a.result(), on_b.result()


@pytest.mark.postgres
@pytest.mark.kernel
def test_replicas_share_logins_and_follow_live_versions(pg_server, tmp_path):
    name, db_url = pg_server.fresh_database()
    try:
        users = seed_users(db_url)
        secret = secrets.token_hex(32)
        secret_file = tmp_path / "cookie_secret.hex"
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
        common = [f"--store-url=file://{tmp_path / 'store'}",
                  "--RuntimeConfiguration.pool_size=1",
                  "--RuntimeConfiguration.custom_pool_size=1",
                  "--RuntimeConfiguration.max_kernels_per_viewer=0",  # the probe opens many
                  # listings cached long: only the replica's own check of live versions
                  # (or its own decisions) can refresh them within the test
                  "--NbappsServer.cache_seconds=60"]
        with replica(tmp_path / "a", db_url, users, [*common, "--NbappsServer.check_workers=1"],
                     serve_apps=True,
                     env={"NBAPPS_COOKIE_SECRET": secret}) as a, \
                replica(tmp_path / "b", db_url, users, serve_apps=True,
                        args=[*common, f"--NbappsServer.cookie_secret_file={secret_file}",
                              "--NbappsServer.check_workers=0"]) as b:  # checks run on A
            # a login cookie made by A is valid on B (and an unsigned one is not)
            with a.browser("vic") as on_a:
                assert on_a.get("/api/me").json()["name"] == "vic"
                cookies = dict(on_a.http.cookies.items())
            assert "nbapps-session" in cookies
            with httpx.Client(base_url=b.url, cookies=cookies, timeout=30) as on_b:
                me = on_b.get("/api/me")
                assert me.status_code == 200 and me.json()["name"] == "vic", me.text
            forged = {**cookies, "nbapps-session": cookies["nbapps-session"][:-4] + "AAAA"}
            with httpx.Client(base_url=b.url, cookies=forged, timeout=30) as on_b:
                assert on_b.get("/api/me").status_code == 401

            # v1 approved on A: both replicas serve it
            v1, slug = publish(a, tmp_path / "v1", "REPLICA-V1")
            _wait_serving(a, slug, "REPLICA-V1", 180)
            _wait_serving(b, slug, "REPLICA-V1", 180)

            # v2 approved on A: B follows
            v2 = _submit(a, build_archive(tmp_path / "v2", _app_notebook("REPLICA-V2")))
            assert {_listed_live(g, slug) for g in (a, b)} == {v1["id"]}  # now cached
            decided = _approve_api(a, v2["id"])
            on_a_at, on_b_at = _both_serving(a, b, slug, "REPLICA-V2", 60)
            print(f"\napproval on A: A serves v2 after {on_a_at - decided:.2f} s, "
                  f"B after {on_b_at - decided:.2f} s")
            # the switch itself (start + warm the new runner) takes as long on both; what
            # replication adds is B's lag behind the replica that decided
            assert on_b_at - on_a_at < FOLLOW_BOUND_S, (on_a_at - decided, on_b_at - decided)
            assert {_listed_live(g, slug) for g in (a, b)} == {v2["id"]}

            # a rollback on B: A follows
            r = httpx.post(f"{b.url}/api/apps/{slug}/rollback", json={"comment": "back"},
                           headers={"Authorization": f"Bearer {users['rob'].token}"},
                           timeout=60)
            assert r.status_code == 200, r.text
            rolled = time.monotonic()
            on_a_at, on_b_at = _both_serving(a, b, slug, "REPLICA-V1", 60)
            print(f"rollback on B: B serves v1 after {on_b_at - rolled:.2f} s, "
                  f"A after {on_a_at - rolled:.2f} s")
            assert on_a_at - on_b_at < FOLLOW_BOUND_S, (on_b_at - rolled, on_a_at - rolled)
            assert {_listed_live(g, slug) for g in (a, b)} == {v1["id"]}

            # both replicas' APIs agree on the live version (listings are not stale)
            for g in (a, b):
                with g.client("vic") as c:
                    live = c.get(f"/api/apps/{slug}").json()["live"]
                    assert live["id"] == v1["id"], (g.url, live)
    finally:
        pg_server.drop_database(name)


#: what pg_stat_activity shows for a replica's listening connection (its last statement)
_LISTENING = f"LISTEN {LIVE_CHANNEL}; LISTEN {CATALOG_CHANNEL}"


def _listeners(cat: Any) -> int:
    """Connections listening for live-version changes (one per replica)."""
    with cat.engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE query = :q"),
            {"q": _LISTENING}).scalar_one())


def _wait_listeners(cat: Any, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _listeners(cat) != n:
        assert time.monotonic() < deadline, f"{_listeners(cat)} listeners, not {n}"
        time.sleep(0.05)  # polling the server's activity view (no event to wait on)


def _follows(g: Gallery, slug: str, version_id: int, since: float, timeout: float) -> float:
    """Seconds after ``since`` at which ``g``'s (cached) listing shows ``version_id`` live."""
    while _listed_live(g, slug) != version_id:
        assert time.monotonic() - since < timeout, f"{g.url} still lists the old live version"
        time.sleep(0.05)  # polling a page over HTTP (no event to wait on)
    return time.monotonic() - since


@pytest.mark.postgres
def test_a_change_reaches_the_other_replica_at_once_on_postgresql(pg_server, tmp_path):
    """Both replicas poll only every 60 s and cache listings for 60 s, so only the catalog's
    NOTIFY can make the other list the new live version within seconds; after their
    listening connections are cut, both listen again and still follow each other. A curation
    (no live-version change) reaches the other replica's listing the same way."""
    name, db_url = pg_server.fresh_database()
    cat = None
    try:
        users = seed_users(db_url)
        cat = open_catalog(db_url)
        store = open_store(None, tmp_path / "seed")
        ids = []
        for i in range(3):
            v = seed_version(cat, store, slug="pushed", submitter="ana", title="Pushed",
                             salt=str(i))
            cat.decide(v.version.id, "rita", "approve", "ok")
            ids.append(v.version.id)
        common = ["--NbappsServer.cache_seconds=60", "--NbappsServer.live_poll_interval=60",
                  "--NbappsServer.check_workers=0"]
        rollback = {"json": {"comment": "back"}, "timeout": 60,
                    "headers": {"Authorization": f"Bearer {users['rob'].token}"}}
        with replica(tmp_path / "a", db_url, users, common) as a, \
                replica(tmp_path / "b", db_url, users, common) as b:
            _wait_listeners(cat, 2)
            assert {_listed_live(g, "pushed") for g in (a, b)} == {ids[2]}  # cached now
            r = httpx.post(f"{a.url}/api/apps/pushed/rollback", **rollback)
            assert r.status_code == 200, r.text
            lag = _follows(b, "pushed", ids[1], time.monotonic(), 15)
            print(f"\nrollback on A: B lists it after {lag:.2f} s (poll 60 s)")

            with cat.engine.connect() as conn:  # cut both replicas' listening connections
                conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE query = :q"), {"q": _LISTENING})
            _wait_listeners(cat, 2)
            r = httpx.post(f"{b.url}/api/apps/pushed/rollback", **rollback)
            assert r.status_code == 200, r.text
            lag = _follows(a, "pushed", ids[0], time.monotonic(), 15)
            print(f"after reconnecting, rollback on B: A lists it after {lag:.2f} s")

            # curation is no live-version change: A announces it, B drops its listings
            assert _listed_category(b, "pushed") is None  # cached now
            r = httpx.patch(f"{a.url}/api/apps/pushed", json={"category": "finance"},
                            headers={"Authorization": f"Bearer {users['adam'].token}"},
                            timeout=60)
            assert r.status_code == 200, r.text
            since = time.monotonic()
            while _listed_category(b, "pushed") != "finance":
                assert time.monotonic() - since < 15, "B still lists the app uncurated"
                time.sleep(0.05)  # polling a page over HTTP (no event to wait on)
            print(f"curation on A: B lists it after {time.monotonic() - since:.2f} s")
    finally:
        if cat is not None:
            cat.close()
        pg_server.drop_database(name)


def test_listings_follow_a_decision_made_by_another_process(tmp_path):
    """The catalog changed behind this gallery's back (as another replica does): its cached
    listing shows the new live version within the poll interval, not the cache's 60 s."""
    with thread_gallery(tmp_path, args=["--NbappsServer.cache_seconds=60",
                                        "--NbappsServer.live_poll_interval=0.2"]) as g:
        with catalog_of(g) as (cat, store):
            v1 = seed_version(cat, store, slug="elsewhere", submitter="ana", title="Elsewhere")
            cat.decide(v1.version.id, "rita", "approve", "ok")
        assert _listed_live(g, "elsewhere") == v1.version.id  # cached now
        with catalog_of(g) as (cat, store):  # "another replica"
            v2 = seed_version(cat, store, slug="elsewhere", submitter="ana", title="Elsewhere",
                              salt="2")
            cat.decide(v2.version.id, "rob", "approve", "ok")
        changed = time.monotonic()
        while _listed_live(g, "elsewhere") != v2.version.id:
            assert time.monotonic() - changed < 5, "the listing stayed stale"
            time.sleep(0.05)  # polling a page over HTTP (no event to wait on)
        print(f"\nlisting followed after {time.monotonic() - changed:.2f} s (poll 0.2 s)")


@pytest.mark.parametrize("how", ["not-hex", "too-short", "open-file", "missing-file"])
def test_a_bad_cookie_secret_is_a_coded_error(tmp_path, how):
    value, file, env = "", "", {}
    secret_file = tmp_path / "secret.hex"
    if how == "not-hex":
        env["NBAPPS_COOKIE_SECRET"] = "not a hex secret " * 4
    elif how == "too-short":
        value = secrets.token_hex(8)
    else:
        if how == "open-file":
            secret_file.write_text(secrets.token_hex(32))
            secret_file.chmod(0o644)
        file = str(secret_file)
    with pytest.raises(CookieSecretError) as info:
        resolve_cookie_secret(tmp_path, value=value, file=file, env=env)
    assert info.value.code == "NBA314"
    assert not (tmp_path / "cookie_secret").exists()  # no fallback to a per-data-dir secret


def test_the_cookie_secret_sources_in_order(tmp_path):
    one, two = secrets.token_hex(32), secrets.token_hex(32)
    secret_file = tmp_path / "secret.hex"
    secret_file.write_text(two + "\n")
    secret_file.chmod(0o600)
    env = {"NBAPPS_COOKIE_SECRET": one}
    assert resolve_cookie_secret(tmp_path, value=two, file="", env=env)[0] == bytes.fromhex(two)
    assert resolve_cookie_secret(tmp_path, file=str(secret_file), env=env) \
        == (bytes.fromhex(one), "$NBAPPS_COOKIE_SECRET")
    assert resolve_cookie_secret(tmp_path, file=str(secret_file), env={}) \
        == (bytes.fromhex(two), str(secret_file))
    own, where = resolve_cookie_secret(tmp_path, env={})  # today's default: the data dir's
    assert where == str(tmp_path / "cookie_secret") and len(own) >= 32
    assert resolve_cookie_secret(tmp_path, env={})[0] == own


def test_a_server_with_a_bad_secret_stops_with_one_coded_line(tmp_path):
    data_dir, db_url, _ = new_data_dir(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "nbapps.server.app", "--port=0", f"--data-dir={data_dir}",
         f"--db-url={db_url}", "--NbappsServer.serve_apps=False"],
        cwd=ROOT, env={**os.environ, "NBAPPS_COOKIE_SECRET": "xyz"}, capture_output=True,
        text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "nbapps: error: NBA314: the cookie secret in $NBAPPS_COOKIE_SECRET is not " \
           "hexadecimal" in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def _tree(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every path under ``root`` with its type, mode, size, mtime and content digest."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        out[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out


def test_a_refused_second_server_touches_nothing(tmp_path):
    data_dir, db_url, users = new_data_dir(tmp_path)
    proc, url = start_process(data_dir, db_url, serve_apps=True,
                              args=["--NbappsServer.live_poll_interval=0",
                                    "--NbappsServer.check_workers=0"])
    try:
        # an upload in flight on the first server, as its upload handler spools it
        inflight = data_dir / "tmp" / "uploads" / "upload-in-flight.part"
        inflight.write_bytes(b"half an archive")
        # the first server's own SQLite shared-memory files change while it serves: not ours
        before = {k: v for k, v in _tree(data_dir).items() if not k.endswith(("-shm", "-wal"))}
        second = subprocess.run(
            [sys.executable, "-m", "nbapps.server.app", "--port=0", f"--data-dir={data_dir}",
             f"--db-url={db_url}", "--NbappsServer.serve_apps=True"],
            cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1, second.stdout + second.stderr
        assert "nbapps: error: NBA403:" in second.stderr, second.stderr
        assert f"(pid {proc.pid})" in second.stderr
        after = {k: v for k, v in _tree(data_dir).items() if not k.endswith(("-shm", "-wal"))}
        assert after == before
        assert inflight.read_bytes() == b"half an archive"
        with httpx.Client(base_url=url, timeout=30) as c:  # the first one serves on
            assert c.get("/healthz").status_code == 200
            assert c.get("/api/me", headers={
                "Authorization": f"Bearer {users['vic'].token}"}).status_code == 200
    finally:
        assert stop_process(proc) == 0
    # its lock ends with it: the data dir is free again (also after SIGKILL: the OS drops it)
    lock_data_dir(data_dir).release()


def test_the_data_dir_lock_is_exclusive(tmp_path):
    held = lock_data_dir(tmp_path)
    try:
        with pytest.raises(DataDirBusy) as info:
            lock_data_dir(tmp_path)
        assert info.value.code == "NBA403" and f"pid {os.getpid()}" in info.value.message
    finally:
        held.release()
    lock_data_dir(tmp_path).release()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_db_upgrade_migrates_alone_and_idempotently(request, tmp_path, capsys, backend):
    from nbapps.catalog import open_catalog
    from nbapps.catalog.db import head_revision
    from nbapps.cli.main import main

    name = None
    if backend == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        pg = request.getfixturevalue("pg_server")
        name, db_url = pg.fresh_database(migrated=False)
    try:
        head = head_revision()
        assert main(["db", "upgrade", "--db-url", db_url]) == 0
        first = capsys.readouterr().out
        assert f"schema migrated (empty) -> {head}" in first
        assert main(["db", "upgrade", "--db-url", db_url]) == 0
        assert f"schema already at {head}; nothing to do" in capsys.readouterr().out
        with open_catalog(db_url, migrate_schema=False) as cat:
            assert cat.schema_revision() == head
    finally:
        if name is not None:
            request.getfixturevalue("pg_server").drop_database(name)
