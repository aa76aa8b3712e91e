"""The gallery as JupyterHub deploys it: a service the Hub starts itself, behind the Hub's real
configurable-http-proxy at ``/services/nbapps/``, on one origin with the Hub.

Everything goes through the proxy as a browser's requests would: the gallery's pages, the Hub
OAuth login (``JUPYTERHUB_*`` variables only, no HubConfiguration set by hand), an app page and
its kernel WebSocket; then a Hub logout ends the gallery session.
"""
from __future__ import annotations

import re
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from tests.chromium import launched_chromium
from tests.hub import Hub, chp_command, running_hub
from tests.pg import free_port
from tests.server_harness import Gallery, ThreadServer, build_archive, new_data_dir
from tests.test_app_browser import LOAN, _approve_api, _submit, _wait_app_rendered, step_term_slider
from tests.test_hub_auth import HUB_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.kernel, pytest.mark.slow]

SERVICE = "nbapps"
PREFIX = f"/services/{SERVICE}/"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory) -> Iterator[tuple[Hub, str, str]]:
    """(Hub, the gallery's public URL through the proxy, the approved app's slug)."""
    base = tmp_path_factory.mktemp("hubproxy")
    # the approved app, recorded by a gallery with built-in accounts on the same data dir
    data_dir, db_url, users = new_data_dir(base)
    seeder = ThreadServer(data_dir, db_url, [])
    try:
        g = Gallery(url=seeder.start().rstrip("/"), data_dir=data_dir, db_url=db_url, users=users,
                    server=seeder)
        sub = _submit(g, build_archive(base / "loan", nbformat.read(LOAN, as_version=4)))
        _approve_api(g, sub["id"])
    finally:
        seeder.stop()
    hub_port, proxy_port, api_port, gallery_port = (free_port() for _ in range(4))
    # the command docs/deploy.md gives (plus small pools and a 1 s re-check for the test)
    command = [str(Path(sys.executable).with_name("nbapps")), "serve", "--ip=127.0.0.1",
               f"--port={gallery_port}", f"--data-dir={data_dir}", f"--base-url={PREFIX}",
               "--set", "auth=jupyterhub", "--set", "app_pool_size=1",
               "--set", "app_custom_pool_size=1", "--set", "HubConfiguration.recheck_seconds=1"]
    config = f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = {HUB_PASSWORD!r}
        c.Authenticator.allow_all = True
    """
    services = [{"name": SERVICE, "url": f"http://127.0.0.1:{gallery_port}",
                 "command": command, "oauth_no_confirm": True,
                 "api_token": secrets.token_hex(32)}]
    roles = [{"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
             {"name": "nbapps-service", "services": [SERVICE],
              "scopes": ["read:users", "read:roles:users"]}]
    proxy = (chp_command(tmp_path_factory.mktemp("chp")), proxy_port, api_port)
    with running_hub(base / "hub", hub_port, config, services=services, roles=roles,
                     proxy=proxy) as hub:
        public = f"http://127.0.0.1:{proxy_port}{PREFIX}"
        deadline = time.monotonic() + 120
        while True:  # the Hub started the gallery; up once the proxy reaches it
            try:
                if httpx.get(f"{public}healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Hub-managed gallery never answered " \
                "through the proxy:\n" + hub.log.read_text()[-4000:]
            time.sleep(0.2)  # polling the proxy until the service answers
        yield hub, public, sub["slug"]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _status(page: Any, url: str) -> int:
    return int(page.request.get(url).status)


def test_a_hub_managed_gallery_behind_the_hub_proxy(proxied, chromium):
    hub, public, slug = proxied
    origin = public.split(PREFIX)[0]
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        # the gallery's login page, through the proxy; its Hub login goes to the Hub on the
        # same origin and comes back to the gallery's callback under the prefix
        page.goto(f"{public}login?next={PREFIX}")
        page.locator("#hub-login").click()
        page.wait_for_url(re.compile(rf"^{re.escape(origin)}/hub/login"))
        page.fill("#username_input", "paula")
        page.fill("#password_input", HUB_PASSWORD)
        page.locator("#login_submit").click()
        page.wait_for_url(lambda u: u.startswith(public) and "/login" not in u
                          and "oauth_callback" not in u)
        me = page.request.get(f"{public}api/me")
        assert me.status == 200 and me.json()["name"] == "paula", me.text()

        # an app through the proxy: its page, assets and kernel WebSocket under the prefix
        page.goto(f"{public}app/{slug}/open")
        assert re.search(rf'src="{re.escape(PREFIX)}apps/{slug}/~t/',
                         page.content()), page.content()[:2000]
        _wait_app_rendered(page)
        step_term_slider(page)  # a widget message and the kernel's answer: the WebSocket works

        # logging out of the Hub ends the gallery session (re-checked every second here)
        page.goto(f"{origin}/hub/logout")
        deadline = time.monotonic() + 60
        while _status(page, f"{public}api/me") != 401:
            assert time.monotonic() < deadline, "the gallery session outlived the Hub logout"
            time.sleep(0.2)  # the re-check interval
    finally:
        context.close()
