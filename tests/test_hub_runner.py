"""Runners on the Hub: app runners started as JupyterHub named servers of a service account.

A real JupyterHub (tests/hub.py: no proxy process) with ``SimpleLocalProcessSpawner``, named
servers and :func:`nbapps.runner.hub_launch.pre_spawn_hook`; a gallery (in a thread) with
``RuntimeConfiguration.backend = "jupyterhub"`` and a token scoped to the account's servers
only, which is also the Hub's OAuth service the gallery logs its users in through. The loan
calculator is published and approved; a Hub user logs in through Hub OAuth in Chromium (a
viewer by default), opens it through the gallery and moves a slider (a kernel round trip
over the widget WebSocket, proxied to the Hub-started server); the Hub's REST API shows the
named server while the app runs and none after the gallery has stopped.
"""
from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import nbformat
import psutil
import pytest

from nbapps.runner.hub_launch import pre_spawn_hook, runner_dir_under
from tests.chromium import launched_chromium
from tests.hub import TESTER_SCOPES, Hub, running_hub
from tests.pg import free_port
from tests.server_harness import Gallery, ThreadServer, build_archive, new_data_dir
from tests.test_app_browser import (
    LOAN,
    _approve_api,
    _new_page,
    _open_app_action,
    _submit,
    _wait_app_rendered,
    step_term_slider,
)
from tests.test_hub_auth import HUB_PASSWORD, _hub_login
from tests.test_replicas_forwarding import _open_page, _socket_round

HUB_USER = "vera"
ACCOUNT = "nbapps-apps"
SERVICE = "nbapps-runners"


def hub_config(runtime_root: Path, fetch_root: Path, fetch_gallery: str) -> str:
    """Named servers of ``ACCOUNT``, each running the runner folder its ``user_options`` name;
    those that carry a launch secret (a gallery with ``hub_runner_files = "fetch"`` at
    ``fetch_gallery``) fetch it instead, in a mount namespace where that gallery's runtime
    folder ``fetch_root`` is an empty tmpfs: like a pod that sees nothing of the gallery's
    disk, on this machine."""
    return f"""
        from nbapps.runner.hub_launch import pre_spawn_hook
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = {HUB_PASSWORD!r}
        c.Authenticator.allowed_users = {{{HUB_USER!r}}}
        c.JupyterHub.allow_named_servers = True
        c.JupyterHub.spawner_class = "simple"
        c.SimpleLocalProcessSpawner.home_dir_template = {str(runtime_root.parent / "hub-home")!r}
        shared = pre_spawn_hook({str(runtime_root)!r}, {ACCOUNT!r})
        fetching = pre_spawn_hook({str(fetch_root)!r}, {ACCOUNT!r},
                                  gallery_url={fetch_gallery!r})

        def hook(spawner):
            if "launch_secret" not in (spawner.user_options or {{}}):
                return shared(spawner)
            fetching(spawner)
            hide = 'mount -t tmpfs tmpfs {fetch_root} && exec "$@"'
            spawner.cmd = ["unshare", "--mount", "--", "sh", "-c", hide, "sh", *spawner.cmd]

        c.Spawner.pre_spawn_hook = hook
        c.Spawner.http_timeout = 180
        c.Spawner.start_timeout = 180
    """


def hub_servers(hub: Hub, stopped: bool = False) -> dict[str, Any]:
    query = "?include_stopped_servers" if stopped else ""
    r = hub.call("GET", f"users/{ACCOUNT}{query}")
    assert r.status_code == 200, r.text
    return dict(r.json().get("servers") or {})


@pytest.fixture(scope="module")
def hub_and_folder(tmp_path_factory) -> Iterator[tuple[Hub, Path]]:
    base = tmp_path_factory.mktemp("hub-runner")
    token = secrets.token_hex(32)
    # the gallery is also the Hub's OAuth service: its users log in through the Hub
    gallery_url = f"http://localhost:{free_port()}"
    services = [{"name": SERVICE, "api_token": token, "url": gallery_url,
                 "oauth_client_id": f"service-{SERVICE}",
                 "oauth_redirect_uri": gallery_url + "/oauth_callback",
                 "oauth_no_confirm": True}]
    # the gallery's token may start, stop and read this account's servers and read users
    # (their groups, for the role map); Hub users may use the gallery
    roles = [{"name": "nbapps-runners", "services": [SERVICE],
              "scopes": [f"servers!user={ACCOUNT}", "read:users"]},
             {"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]}]
    data_dir = base / "data"
    fetch_gallery = f"http://127.0.0.1:{free_port()}"
    with running_hub(base / "hub", free_port(),
                     hub_config(data_dir / "runtime", base / "fetch" / "data" / "runtime",
                                fetch_gallery),
                     services=services, roles=roles,
                     tester_scopes=[*TESTER_SCOPES, "admin:servers"]) as hub:
        r = hub.call("POST", f"users/{ACCOUNT}")
        assert r.status_code == 201, r.text
        hub.service_token = token  # type: ignore[attr-defined]
        hub.gallery_url = gallery_url  # type: ignore[attr-defined]
        hub.fetch_gallery_url = fetch_gallery  # type: ignore[attr-defined]
        yield hub, base


@pytest.mark.kernel
@pytest.mark.browser
@pytest.mark.slow
def test_app_runs_as_a_hub_named_server_and_stops_with_the_gallery(hub_and_folder):
    hub, base = hub_and_folder
    data_dir, db_url, users = new_data_dir(base)
    # Hub records a dead gallery left (its runner folders are under this runtime folder) are
    # removed at start; another replica's (another runtime folder) are not
    leftovers = {"nba-dead-0001": str(data_dir / "runtime" / "runners" / "old-runner"),
                 "nba-other-0001": str(base / "replica-b" / "runtime" / "runners" / "r")}
    for name, folder in leftovers.items():
        r = hub.call("PUT", f"users/{ACCOUNT}/servers/{name}",
                     json={"user_options": {"runner_dir": folder, "port": 1}})
        assert r.status_code == 201, r.text
    gallery_url: str = hub.gallery_url  # type: ignore[attr-defined]
    server = ThreadServer(data_dir, db_url, [
        "--NbappsServer.auth=jupyterhub", f"--HubConfiguration.api_url={hub.api}",
        f"--HubConfiguration.api_token={hub.service_token}",  # type: ignore[attr-defined]
        f"--HubConfiguration.service_name={SERVICE}", f"--HubConfiguration.hub_url={hub.url}",
        f"--HubConfiguration.callback_url={gallery_url}/oauth_callback",
        "--RuntimeConfiguration.backend=jupyterhub",
        f"--RuntimeConfiguration.hub_api_url={hub.api}",
        f"--RuntimeConfiguration.hub_api_token={hub.service_token}",  # type: ignore[attr-defined]
        f"--RuntimeConfiguration.hub_account={ACCOUNT}"])
    server.server.port = int(gallery_url.rsplit(":", 1)[1])  # registered in the Hub
    server.server.serve_apps = True
    server.server.app_pool_size = 1
    server.server.app_custom_pool_size = 1
    stopped = False
    try:
        server.start()
        g = Gallery(url=gallery_url, data_dir=data_dir, db_url=db_url, users=users,
                    server=server)
        assert set(hub_servers(hub, stopped=True)) - {""} == {"nba-other-0001"}
        loan = _submit(g, build_archive(base / "loan", nbformat.read(LOAN, as_version=4)))
        slug = loan["slug"]
        _approve_api(g, loan["id"])
        with launched_chromium() as browser:
            context, page = _new_page(browser)
            try:
                # a Hub user logs in through Hub OAuth (single sign-on), a viewer by default
                _hub_login(page, g, HUB_USER)
                me = page.request.get(f"{g.url}/api/me").json()
                assert (me["name"], me["role"]) == (HUB_USER, "viewer"), me
                page.goto(f"{g.url}/app/{slug}")
                _open_app_action(page).click()
                page.wait_for_url(re.compile(rf"/app/{re.escape(slug)}/open"))
                _wait_app_rendered(page)
                step_term_slider(page)  # a kernel round trip through the Hub-started server
            finally:
                context.close()
        # the Hub knows the runner as a ready named server of the account, for this version
        servers = hub_servers(hub)
        ours = {name: s for name, s in servers.items()
                if s["user_options"]["nbapps"]["slug"] == slug}
        assert len(ours) == 1, servers
        name, model = next(iter(ours.items()))
        assert model["ready"] and not model["pending"], model
        version = model["user_options"]["nbapps"]["version"]
        assert name.startswith(f"nba-{version[:12]}-"), name
        assert model.get("display_name") == f"{slug} {version[:12]}", model
        folder = runner_dir_under(data_dir / "runtime", model["user_options"]["runner_dir"])
        pid = int((folder / "hub-launch.pid").read_text())
        assert psutil.Process(pid).ppid() == hub.process.pid  # the Hub started it
        # the app's kernels get the runner's environment, not the Hub's token
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"JUPYTERHUB_API_TOKEN" not in environ
        server.stop()
        stopped = True
        assert name not in hub_servers(hub, stopped=True)  # stopped and removed
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)  # polling the process's end
        assert not _pid_alive(pid)
    finally:
        if not stopped:
            server.stop()
        for name in set(hub_servers(hub, stopped=True)) - {""}:  # what the test left
            hub.call("DELETE", f"users/{ACCOUNT}/servers/{name}", json={"remove": True})


@pytest.mark.kernel
@pytest.mark.slow
def test_a_runner_the_hub_runs_elsewhere_fetches_its_folder_and_reports_over_http(
        hub_and_folder):
    """``hub_runner_files = "fetch"``: the spawned server cannot see the gallery's runtime
    folder (an empty tmpfs over it, in its own mount namespace), so everything goes over HTTP:
    its folder (one-time secret), its address, its status; the page and the kernel socket
    through the gallery's proxy reach it at the address it reported."""
    hub, base = hub_and_folder
    data_dir, db_url, users = new_data_dir(base / "fetch")
    gallery_url: str = hub.fetch_gallery_url  # type: ignore[attr-defined]
    server = ThreadServer(data_dir, db_url, [
        "--RuntimeConfiguration.backend=jupyterhub",
        f"--RuntimeConfiguration.hub_api_url={hub.api}",
        f"--RuntimeConfiguration.hub_api_token={hub.service_token}",  # type: ignore[attr-defined]
        f"--RuntimeConfiguration.hub_account={ACCOUNT}",
        "--RuntimeConfiguration.hub_runner_files=fetch",
        "--RuntimeConfiguration.pool_size=1", "--RuntimeConfiguration.custom_pool_size=1"])
    server.server.port = int(gallery_url.rsplit(":", 1)[1])  # the Hub hook's gallery_url
    server.server.serve_apps = True
    access = logging.handlers.BufferingHandler(100_000)  # on the logger: the gallery's own
    access.setLevel(logging.DEBUG)                        # logging set-up may not propagate
    access_logger = logging.getLogger("nbapps.access")
    access_logger.addHandler(access)
    level = access_logger.level
    access_logger.setLevel(logging.DEBUG)
    try:
        server.start()
        g = Gallery(url=gallery_url, data_dir=data_dir, db_url=db_url, users=users,
                    server=server)
        loan = _submit(g, build_archive(base / "fetch-loan", nbformat.read(LOAN, as_version=4)))
        slug = loan["slug"]
        _approve_api(g, loan["id"])
        t0 = time.monotonic()
        page_base, kernel = _open_page(g.url, slug, users["vic"].token)
        print(f"\nfirst page through a fetching Hub runner: {time.monotonic() - t0:.2f} s")
        ws_url = "ws" + g.url.removeprefix("http") + f"{page_base}api/kernels/{kernel}/channels"
        reply, seen = asyncio.run(_socket_round(ws_url))
        assert reply == "kernel_info_reply" and "execute_reply" not in seen, seen

        [(name, model)] = [(n, m) for n, m in hub_servers(hub).items()
                           if m["user_options"].get("nbapps", {}).get("slug") == slug]
        options = model["user_options"]
        folder = data_dir / "runtime" / "runners" / options["runner"]
        # the server ran in its own view of the disk: what it wrote there is not here
        assert folder.is_dir() and not (folder / "hub-launch.pid").exists()
        assert not (folder / "status.json").exists()  # its status came over HTTP
        launch = f"{g.url}/api/runtime/runners/{options['runner']}"
        again = httpx.post(f"{launch}/launch", json={"host": "127.0.0.1"}, timeout=30,
                           headers={"Authorization": f"token {options['launch_secret']}"})
        assert again.status_code == 404  # the launch secret was good once
        forged = httpx.post(f"{launch}/status", json={"pools": {}}, timeout=30,
                            headers={"Authorization": "token guessed"})
        assert forged.status_code == 404
        # the runner's reports (every 2 s) stay out of the gallery's INFO access log
        info = [r.getMessage() for r in access.buffer if r.levelno >= logging.INFO]
        debug = [r.getMessage() for r in access.buffer if r.levelno < logging.INFO]
        assert any("/api/submissions" in line for line in info), info[-5:]  # it logs
        assert not any(line.endswith(("/status 204", "/launch 200")) or "/status 204 " in line
                       for line in info), info[-5:]
        assert any("/status 204 " in line for line in debug), debug[-5:]
        server.stop()
        assert name not in hub_servers(hub, stopped=True)  # stopped and removed
    finally:
        access_logger.removeHandler(access)
        access_logger.setLevel(level)
        server.stop()
        for name in set(hub_servers(hub, stopped=True)) - {""}:  # what the test left
            hub.call("DELETE", f"users/{ACCOUNT}/servers/{name}", json={"remove": True})


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def test_the_hub_hook_refuses_folders_outside_the_runtime(tmp_path):
    runners = tmp_path / "runtime" / "runners"
    (runners / "r1").mkdir(parents=True)
    (runners / "r1" / "hub-launch.json").write_text("{}")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "hub-launch.json").write_text("{}")
    assert runner_dir_under(tmp_path / "runtime", str(runners / "r1")) == (runners / "r1")
    for bad in (str(tmp_path / "elsewhere"), str(runners / "r1" / ".." / ".." / ".."),
                str(runners), "", None, str(runners / "missing")):
        with pytest.raises(ValueError):
            runner_dir_under(tmp_path / "runtime", bad)
    # a link inside the runners folder that leads elsewhere is resolved and refused
    os.symlink(tmp_path / "elsewhere", runners / "link")
    with pytest.raises(ValueError):
        runner_dir_under(tmp_path / "runtime", str(runners / "link"))
    # the hook sets the account's spawns up and leaves every other user's to their own hook
    hook = pre_spawn_hook(tmp_path / "runtime", ACCOUNT, python="/py",
                          other=lambda sp: setattr(sp, "cmd", ["other-hook"]))
    ours = SimpleNamespace(user=SimpleNamespace(name=ACCOUNT), cmd=["jupyterhub-singleuser"],
                           args=["--x"], port=0,
                           user_options={"runner_dir": str(runners / "r1"), "port": 4321})
    hook(ours)
    assert ours.cmd == ["/py", "-m", "nbapps.runner.hub_launch", "--runner-dir",
                        str(runners / "r1")]
    assert ours.port == 4321 and ours.args == []
    theirs = SimpleNamespace(user=SimpleNamespace(name="alice"), cmd=["jupyterhub-singleuser"],
                             user_options={})
    hook(theirs)
    assert theirs.cmd == ["other-hook"]
    bad_port = SimpleNamespace(user=SimpleNamespace(name=ACCOUNT), cmd=[], args=[], port=0,
                               user_options={"runner_dir": str(runners / "r1"), "port": 0})
    with pytest.raises(ValueError):
        hook(bad_port)


def test_the_fetching_hub_hook_names_only_the_gallery_and_hides_the_secret():
    """With ``gallery_url`` the hook never reads a folder: the server fetches runner
    ``user_options.runner`` from that gallery only, with the secret in its environment."""
    hook = pre_spawn_hook("/nowhere", ACCOUNT, python="/py",
                          gallery_url="http://nbapps.ns.svc:80/")
    secret = "s" * 43

    def spawner(**options: Any) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name=ACCOUNT), cmd=[], args=["--x"],
                               port=0, environment={"KEEP": "1"}, user_options=options)

    ours = spawner(runner="loan-99e27a3cc117-1796410118-29104-1", port=4321,
                   launch_secret=secret, runner_dir="/elsewhere/not/checked")
    hook(ours)
    assert ours.cmd == ["/py", "-m", "nbapps.runner.hub_launch", "--fetch",
                        "http://nbapps.ns.svc:80/api/runtime/runners/"
                        "loan-99e27a3cc117-1796410118-29104-1/launch"]
    assert secret not in " ".join(ours.cmd) and ours.args == [] and ours.port == 4321
    assert ours.environment == {"KEEP": "1", "NBAPPS_LAUNCH_SECRET": secret}
    for bad in ({"runner": "../../x", "port": 1, "launch_secret": secret},
                {"runner": "http://evil/", "port": 1, "launch_secret": secret},
                {"runner": "r1", "port": 1},
                {"runner": "r1", "port": 0, "launch_secret": secret}):
        with pytest.raises(ValueError):
            hook(spawner(**bad))


def test_hub_backend_needs_its_settings():
    from nbapps.errors import NbappsError
    from nbapps.runner.settings import RuntimeConfiguration

    assert RuntimeConfiguration().supervisor_settings(Path("/tmp/x")).hub is None
    hub = RuntimeConfiguration(backend="jupyterhub", hub_api_url="http://h/hub/api",
                               hub_api_token="", hub_account="a").hub_settings()
    assert hub is not None
    with pytest.raises(NbappsError) as bad:
        hub.check()
    assert bad.value.code == "NBA410" and "hub_api_token" in str(bad.value)
