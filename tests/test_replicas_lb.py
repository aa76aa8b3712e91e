"""Two gallery replicas behind a real nginx: app pages stick to one replica, a kill -9 costs
only that replica's open app sessions.

Topology (all on loopback): one real PostgreSQL (the catalog), one bundle store (a folder both
replicas use), two ``nbapps`` server processes with their own data dirs and runners, sharing the
cookie secret, and Debian's nginx in front with the config ``nbapps deploy nginx-config`` prints
(:mod:`nbapps.loadbalancer`: the requests of an app page are hashed on its ticket, gallery pages
go round robin). Everything below goes through nginx, in Chromium for the viewer: publish and
approve the loan calculator, open it and move a slider (the kernel answers over the WebSocket),
check in nginx's access log that every request of the page reached one replica, kill -9 that
replica, reload: the other replica serves the app and its widgets, and the gallery keeps working.
"""
from __future__ import annotations

import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import nbformat
import pytest

from nbapps.runner.orphans import reap_orphans
from tests.chromium import launched_chromium
from tests.nginx_lb import LogEntry, Nginx, running_nginx
from tests.server_harness import Gallery, build_archive, seed_users, start_process, stop_process
from tests.test_app_browser import (
    LOAN,
    VIEWER,
    _approve_api,
    _login,
    _new_page,
    _submit,
    _wait_app_rendered,
    step_term_slider,
)

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.postgres]

REPLICA_ARGS = ["--NbappsServer.xheaders=True", "--NbappsServer.check_workers=1",
                "--RuntimeConfiguration.pool_size=1",
                "--RuntimeConfiguration.custom_pool_size=1"]


@dataclass
class Replica:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    #: how it was started (:func:`restart`)
    db_url: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] | None = None

    @property
    def address(self) -> str:
        """How nginx's ``$upstream_addr`` names it."""
        return self.url.split("://", 1)[1]


@contextmanager
def replicas_behind_nginx(tmp_path: Path, pg_server: Any, count: int = 2, *,
                          store_config: str = "", env: dict[str, str] | None = None,
                          read_timeout: int = 60
                          ) -> Iterator[tuple[Gallery, Nginx, list[Replica]]]:
    """``count`` replicas on one PostgreSQL database and one bundle store, nginx in front;
    the :class:`Gallery` is nginx's URL with the test users. Everything is stopped on exit,
    runners a killed replica left behind included. The store is a shared folder, or what
    ``store_config`` (lines of a ``jupyter_nbapps_config.py``) sets, with ``env`` added to
    each replica's environment (e.g. S3 credentials)."""
    name, db_url = pg_server.fresh_database()
    users = seed_users(db_url)
    if store_config:
        config = tmp_path / "jupyter_nbapps_config.py"
        config.write_text(store_config)
        store_args = [f"--config={config}"]
    else:
        store_args = [f"--store-url=file://{tmp_path / 'store'}"]
    # one secret for all replicas through $NBAPPS_COOKIE_SECRET (c.NbappsServer.cookie_secret);
    # copying one data dir's cookie_secret file into the others works too
    env = {**(env or {}), "NBAPPS_COOKIE_SECRET": secrets.token_hex(32)}
    replicas: list[Replica] = []
    try:
        for i in range(count):
            data_dir = tmp_path / f"replica{i}" / "data"
            data_dir.mkdir(parents=True)
            args = (*store_args, *REPLICA_ARGS)
            proc, url = start_process(data_dir, db_url, list(args), env=env, serve_apps=True)
            replicas.append(Replica(url, data_dir, proc, db_url, args, env))
        with running_nginx(tmp_path / "nginx", [r.url for r in replicas],
                           read_timeout=read_timeout) as lb:
            yield (Gallery(url=lb.url, data_dir=tmp_path, db_url=db_url, users=users),
                   lb, replicas)
    finally:
        for r in replicas:
            if r.process.poll() is None:
                stop_process(r.process)
            reap_orphans(r.data_dir / "runtime")  # the runners of a replica killed -9
        pg_server.drop_database(name)


def restart(replica: Replica) -> None:
    """Start ``replica`` again (after a kill) on its own port and data dir."""
    port = int(replica.url.rsplit(":", 1)[1].strip("/"))
    replica.process, url = start_process(replica.data_dir, replica.db_url, list(replica.args),
                                         env=replica.env, serve_apps=True, port=port)
    assert url == replica.url, (url, replica.url)


_KERNEL = re.compile(r"/(?:api/kernels|voila/api/shutdown)/([0-9a-f-]{36})")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` (nginx's access log: no event to wait on) until true or fail."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not seen in {timeout} s"
        time.sleep(0.1)


def _ticket_entries(lb: Nginx, slug: str, since: int = 0) -> list[LogEntry]:
    """Access log entries of the app's ticket URLs (the page and all its requests)."""
    prefix = f"/apps/{slug}/~t/"
    return [e for e in lb.entries()[since:] if e.path.startswith(prefix)]


def test_app_pages_stick_to_a_replica_and_survive_a_kill(tmp_path, pg_server):
    with replicas_behind_nginx(tmp_path, pg_server) as (g, lb, replicas), \
            launched_chromium() as chromium:
        sub = _submit(g, build_archive(tmp_path / "loan", nbformat.read(LOAN, as_version=4)))
        _approve_api(g, sub["id"])
        slug = sub["slug"]
        context, page = _new_page(chromium)
        try:
            _login(page, g, VIEWER)
            frame = f"{g.url}/app/{slug}/open"
            page.goto(frame, wait_until="domcontentloaded")
            _wait_app_rendered(page)
            step_term_slider(page)  # 25 → 26 years: a widget message and the kernel's answer

            first = _ticket_entries(lb, slug)
            served_by = {e.upstreams[-1] for e in first}
            assert len(served_by) == 1, f"one page's requests went to {served_by}"
            owner_address = served_by.pop()
            owner = next(r for r in replicas if r.address == owner_address)
            survivor = next(r for r in replicas if r is not owner)
            lost_kernels = {m[1] for e in first if (m := _KERNEL.search(e.route))}
            assert lost_kernels, [e.route for e in first]
            # the frame's progress poll rides on the ticket: it reaches the owner too (the
            # gallery's round-robin API could describe the other replica's runtime)
            status_url = page.get_attribute("#app-progress", "data-status-url")
            mark = len(lb.entries())
            with httpx.Client(base_url=g.url, timeout=30) as c:
                for _ in range(4):
                    assert c.get(status_url).json()["state"] == "ready"
            polls = [e for e in _ticket_entries(lb, slug, mark) if e.path.endswith("/~status")]
            assert len(polls) == 4 and {e.upstreams[-1] for e in polls} == {owner_address}

            owner.process.send_signal(signal.SIGKILL)
            owner.process.wait(30)
            # the open page loses its kernel: its WebSocket, served by the owner, ends (nginx
            # logs a WebSocket when it closes)
            _wait_for(lambda: any(e.route.endswith("/channels") and e.upstreams[-1] == owner_address
                                  for e in _ticket_entries(lb, slug)), "the page's WebSocket")

            # a reload through nginx: the same ticket (one per viewer and app for a while) now
            # hashes to the survivor, which starts the app's runner and serves its widgets
            mark = len(lb.entries())
            page.goto(frame, wait_until="domcontentloaded")
            _wait_app_rendered(page)
            step_term_slider(page)
            # requests of the old page that ended after the kill are logged late, served by
            # the dead owner; a new request cannot be (nginx retries it on the survivor)
            after = [e for e in _ticket_entries(lb, slug, mark)
                     if e.upstreams[-1] != owner_address]
            assert after and {e.upstreams[-1] for e in after} == {survivor.address}, after
            # requests about the lost kernel (the old page's unload beacon, its socket's
            # reconnects) may meet the survivor's runner still starting: 503s nobody reads
            errors = [(e.method, e.route, e.status, e.upstreams) for e in after
                      if e.status >= 500 and not any(k in e.route for k in lost_kernels)]
            assert not errors, errors

            # the gallery's pages keep working through nginx, with the dead replica in its list
            page.goto(f"{g.url}/")
            page.wait_for_selector(f'a[href="/app/{slug}"]')
            mark = len(lb.entries())
            with httpx.Client(base_url=g.url, timeout=30, headers={
                    "Authorization": f"Bearer {g.users[VIEWER].token}"}) as c:
                for _ in range(6):
                    assert c.get("/").status_code == 200
                    r = c.get("/api/apps")
                    assert r.status_code == 200 and slug in r.text, r.text[:300]
            # (the old page's last requests may still be logged late, served by the owner;
            # nginx writes a request's line after its response, so the last may come later)
            def gallery_entries() -> list[LogEntry]:
                return [e for e in lb.entries()[mark:] if e.route in ("/", "/api/apps")]

            _wait_for(lambda: len(gallery_entries()) >= 12, "the 12 gallery requests")
            gallery = gallery_entries()
            assert len(gallery) >= 12 and \
                {e.upstreams[-1] for e in gallery} == {survivor.address}, gallery

            # the killed replica comes back: nginx sends the page's ticket to it again (after
            # fail_timeout), but the open page's kernel is the survivor's; the returned replica
            # forwards the page's kernel requests there (nbapps.server.peers): the kernel
            # model, and the unload beacon that ends the kernel (no kernel left to the cull)
            page.goto(frame, wait_until="domcontentloaded")  # opened on the survivor
            _wait_app_rendered(page)
            app_frame = next(f for f in page.frames if "/~t/" in f.url)
            found = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', app_frame.content())
            assert found, app_frame.content()[:300]
            kernel = found[1]
            model = f"{urlsplit(app_frame.url).path}api/kernels/{kernel}"
            assert httpx.get(f"{survivor.url}{model}", timeout=30).status_code == 200
            restart(owner)

            def returned_serves_the_model() -> bool:
                mark = len(lb.entries())
                r = httpx.get(f"{g.url}{model}", timeout=30)
                def logged() -> list[LogEntry]:
                    return [e for e in lb.entries()[mark:] if e.route.endswith(kernel)]

                _wait_for(lambda: bool(logged()), "the model request's log line")
                entry = logged()[-1]
                if entry.upstreams[-1] != owner.address:
                    time.sleep(0.5)  # nginx still skips the returned replica (fail_timeout)
                    return False
                assert r.status_code == 200 and r.json()["id"] == kernel, r.text
                return True

            _wait_for(returned_serves_the_model, "the returned replica to get the ticket", 60)
            mark = len(lb.entries())
            page.goto(f"{g.url}/")  # the app page unloads: its beacon ends its kernel
            _wait_for(lambda: any(e.method == "POST" and e.route.endswith(kernel)
                                  for e in lb.entries()[mark:]), "the unload beacon")
            [beacon] = [e for e in lb.entries()[mark:]
                        if e.method == "POST" and e.route.endswith(kernel)]
            assert beacon.upstreams[-1] == owner.address and beacon.status < 300, beacon
            _wait_for(lambda: httpx.get(f"{survivor.url}{model}", timeout=30).status_code
                      == 404, "the survivor's kernel to end")

            assert not any(re.search(r"/~t/[A-Za-z0-9_-]{8,}\.", e.path) for e in lb.entries()), \
                "the access log must not hold app tickets"
        finally:
            context.close()


def test_a_hung_replica_is_skipped_after_the_read_timeout(tmp_path, pg_server):
    """A replica that accepts connections but never answers (SIGSTOP: a stuck event loop, a
    swapping machine) costs one request the read timeout, then nginx gives it to the other
    replica and skips the hung one for ``fail_timeout``; nobody gets an error."""
    with replicas_behind_nginx(tmp_path, pg_server, read_timeout=3) as (g, lb, replicas):
        hung, other = replicas
        hung.process.send_signal(signal.SIGSTOP)
        try:
            mark = len(lb.entries())
            took = []
            with httpx.Client(base_url=g.url, timeout=30) as c:
                for _ in range(6):  # round robin: the hung replica's turn comes
                    t0 = time.monotonic()
                    assert c.get("/healthz").status_code == 200
                    took.append(time.monotonic() - t0)
            _wait_for(lambda: len([e for e in lb.entries()[mark:] if e.route == "/healthz"])
                      >= 6, "the 6 requests' log lines")
            served = [e for e in lb.entries()[mark:] if e.route == "/healthz"]
            assert {e.upstreams[-1] for e in served} == {other.address}, served
            failed_over = [e for e in served if e.upstreams[0] == hung.address]
            assert len(failed_over) == 1, served  # then skipped for fail_timeout (10 s)
            print(f"\nrequests through nginx with a hung replica: {[round(t, 2) for t in took]} s")
            assert sorted(took)[-1] >= 3 and sorted(took)[-2] < 3, took
        finally:
            hung.process.send_signal(signal.SIGCONT)
