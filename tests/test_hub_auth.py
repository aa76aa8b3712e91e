"""JupyterHub as identity provider: a real Hub on loopback, the gallery as its external service.

The Hub (``python -m jupyterhub``, DummyAuthenticator, no spawning) runs without
configurable-http-proxy: its proxy class is a no-op written in the test's config, and browsers
talk to the Hub's own port. The gallery (in a thread, app runners on) is registered as the
service ``nbapps`` with its callback URL; Chromium reaches it as ``localhost`` and the Hub as
``127.0.0.1``, so the two never share cookies (cookies ignore ports). Hub users log in through
the Hub's login page and OAuth and land in the gallery with the role ``role_map`` gives them.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbapps.accounts import Role
from nbapps.catalog import open_catalog
from nbapps.errors import NbappsError
from nbapps.server.hub_config import HubConfiguration, HubUser, has_access, role_for
from tests.chromium import launched_chromium
from tests.hub import Hub
from tests.hub import running_hub as start_hub
from tests.nbfactory import make_notebook
from tests.pg import free_port
from tests.server_harness import Gallery, ThreadServer, build_archive, new_data_dir
from tests.test_app_browser import _approve_api, _submit

HUB_PASSWORD = "hub-shared-password"
SERVICE = "nbapps"
ROLE_MAP = {"group:reviewers": "reviewer", "group:analysts": "analyst", "admin": "admin"}
APP = make_notebook(widget="from IPython.display import HTML\n"
                          "HTML(f'<p>HUB-APP {n} {label}</p>')")
APP_START_MS = 180_000  # first runner start on a loaded 2-core machine


# -- pure parts ------------------------------------------------------------------------------

def test_role_map_takes_the_highest_matching_role():
    roles = {k: Role(v) for k, v in ROLE_MAP.items()} | {"role:gallery-admins": Role.ADMIN}
    plain = HubUser(name="paul")
    assert role_for(plain, roles, Role.VIEWER) is Role.VIEWER
    both = HubUser(name="rhea", groups=frozenset({"analysts", "reviewers"}))
    assert role_for(both, roles, Role.VIEWER) is Role.REVIEWER
    assert role_for(HubUser(name="hal", admin=True), roles, Role.VIEWER) is Role.ADMIN
    assert role_for(HubUser(name="r", roles=frozenset({"gallery-admins"})), roles,
                    Role.VIEWER) is Role.ADMIN
    assert role_for(plain, {}, Role.ANALYST) is Role.ANALYST  # the default role


def test_access_scope_check():
    need = frozenset({"access:services!service=nbapps"})
    assert has_access(frozenset({"access:services!service=nbapps"}), need)
    assert has_access(frozenset({"access:services"}), need)  # unfiltered holds the filtered
    assert not has_access(frozenset({"access:services!service=other"}), need)
    assert not has_access(frozenset({"read:users:name!user"}), need)


def test_a_hub_managed_service_is_configured_by_the_hubs_environment(monkeypatch):
    env = {"JUPYTERHUB_API_URL": "http://10.0.0.5:8081/hub/api/",
           "JUPYTERHUB_API_TOKEN": "s" * 32, "JUPYTERHUB_SERVICE_NAME": "gallery",
           "JUPYTERHUB_CLIENT_ID": "service-gallery", "JUPYTERHUB_HOST": "",
           "JUPYTERHUB_BASE_URL": "/jh/",
           "JUPYTERHUB_OAUTH_CALLBACK_URL": "/jh/services/gallery/oauth_callback"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("JUPYTERHUB_PUBLIC_HUB_URL", "JUPYTERHUB_OAUTH_ACCESS_SCOPES"):
        monkeypatch.delenv(name, raising=False)
    s = HubConfiguration(role_map={"group:a": "analyst"}).settings("/jh/services/gallery/")
    assert s.api_url == "http://10.0.0.5:8081/hub/api"
    assert s.client_id == "service-gallery" and s.service_name == "gallery"
    assert s.callback_url == "/jh/services/gallery/oauth_callback"
    assert s.authorize_url == "/jh/hub/api/oauth2/authorize"  # behind the Hub's proxy
    assert s.access_scopes == {"access:services!service=gallery"}
    assert s.role_map == {"group:a": Role.ANALYST}
    with pytest.raises(NbappsError) as bad:
        HubConfiguration(role_map={"groups:a": "analyst"}).settings()
    assert bad.value.code == "NBA342"
    with pytest.raises(NbappsError) as bad:
        HubConfiguration(role_map={"admin": "superuser"}).settings()
    assert bad.value.code == "NBA342"


# -- without a Hub: configuration errors and an unreachable Hub --------------------------------

def _hub_args(api_url: str, *, token: str = "t" * 32, callback: str = "",
              hub_url: str = "http://127.0.0.1:9/hub/") -> list[str]:
    args = ["--NbappsServer.auth=jupyterhub", f"--HubConfiguration.api_url={api_url}",
            f"--HubConfiguration.api_token={token}",
            "--HubConfiguration.client_id=service-nbapps",
            f"--HubConfiguration.hub_url={hub_url}"]
    if callback:
        args.append(f"--HubConfiguration.callback_url={callback}")
    return args


def test_missing_hub_settings_stop_the_start_with_nba342(tmp_path, monkeypatch):
    for name in ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    data_dir, db_url, _ = new_data_dir(tmp_path)
    server = ThreadServer(data_dir, db_url, ["--NbappsServer.auth=jupyterhub"])
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    server.stop()
    assert getattr(server.error, "code", None) == "NBA342"
    assert "HubConfiguration.api_token" in str(server.error)


def test_unreachable_hub_is_a_coded_error_not_a_traceback(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/hub/api"  # nothing listens there
    data_dir, db_url, users = new_data_dir(tmp_path)
    server = ThreadServer(data_dir, db_url, _hub_args(dead))
    url = server.start().rstrip("/")
    try:
        # a Hub token (not an nba_ token) is checked with the Hub, which does not answer
        r = httpx.get(f"{url}/api/me", headers={"Authorization": "token abcdef0123456789"})
        assert r.status_code == 503 and r.json()["error"] == "NBA344", r.text
        assert "Traceback" not in r.text
        # gallery tokens and passwords do not need the Hub
        r = httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {users['vic'].token}"})
        assert r.status_code == 200 and r.json()["name"] == "vic"
        with httpx.Client(base_url=url) as web:
            page = web.get("/login")
            assert page.status_code == 200 and 'id="hub-login"' in page.text
            # the login link starts OAuth: state in a signed cookie, PKCE challenge
            start = web.get("/hub-login", params={"next": "/review"})
            assert start.status_code == 302
            location = start.headers["location"]
            assert location.startswith("http://127.0.0.1:9/hub/api/oauth2/authorize?")
            assert "code_challenge_method=S256" in location
            assert "client_id=service-nbapps" in location
            assert "nbapps-hub-oauth" in start.headers["set-cookie"]
            # a callback whose state is not this browser's: refused before any Hub call
            wrong = web.get("/oauth_callback", params={"code": "x", "state": "forged"})
            assert wrong.status_code == 400 and "NBA343" in wrong.text
            # the right state (a second login started meanwhile, as in another tab, does not
            # spoil the first), but the Hub cannot be reached: a clear page
            state = re.search(r"[?&]state=([^&]+)", location).group(1)  # type: ignore[union-attr]
            assert web.get("/hub-login").status_code == 302
            down = web.get("/oauth_callback", params={"code": "x", "state": state})
            assert down.status_code == 503 and "NBA344" in down.text
            assert "Traceback" not in down.text
            # a state is used once: the same answer again is refused before any Hub call
            again = web.get("/oauth_callback", params={"code": "x", "state": state})
            assert again.status_code == 400 and "NBA343" in again.text
    finally:
        server.stop()


def test_hub_routes_answer_nba349_in_builtin_mode(tmp_path):
    data_dir, db_url, _ = new_data_dir(tmp_path)
    server = ThreadServer(data_dir, db_url)
    url = server.start().rstrip("/")
    try:
        r = httpx.get(f"{url}/hub-login")
        assert r.status_code == 404 and "NBA349" in r.text
        assert 'id="hub-login"' not in httpx.get(f"{url}/login").text
    finally:
        server.stop()


# -- a real JupyterHub -----------------------------------------------------------------------

@contextmanager
def running_hub(folder: Path, port: int, gallery_url: str, service_token: str) -> Iterator[Hub]:
    config = f"""
        c.JupyterHub.authenticator_class = "dummy"
        c.DummyAuthenticator.password = {HUB_PASSWORD!r}
        c.Authenticator.allow_all = True
        c.Authenticator.allowed_users = {{"rhea", "paul"}}
        c.JupyterHub.load_groups = {{"reviewers": {{"users": ["rhea"]}}, "analysts": {{}}}}
    """
    services = [{"name": SERVICE, "url": gallery_url, "api_token": service_token,
                 "oauth_client_id": f"service-{SERVICE}",
                 "oauth_redirect_uri": gallery_url + "/oauth_callback",
                 "oauth_no_confirm": True}]
    roles = [{"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
             {"name": "nbapps-service", "services": [SERVICE],
              "scopes": ["read:users", "read:roles:users"]}]
    with start_hub(folder, port, config, services=services, roles=roles) as hub:
        yield hub


@pytest.fixture(scope="module")
def hub_gallery(tmp_path_factory) -> Iterator[tuple[Hub, Gallery, str]]:
    """A JupyterHub and a gallery logging in through it, with one approved app."""
    base = tmp_path_factory.mktemp("hub")
    hub_port, gallery_port = free_port(), free_port()
    gallery_url = f"http://localhost:{gallery_port}"
    service_token = secrets.token_hex(32)
    data_dir, db_url, users = new_data_dir(base)
    server = ThreadServer(data_dir, db_url, [
        *_hub_args(f"http://127.0.0.1:{hub_port}/hub/api", token=service_token,
                   callback=f"{gallery_url}/oauth_callback",
                   hub_url=f"http://127.0.0.1:{hub_port}/hub/"),
        "--HubConfiguration.cache_seconds=0.5"])
    server.server.port = gallery_port  # the Hub needs the callback URL before the start
    server.server.config.HubConfiguration.role_map = ROLE_MAP
    server.server.serve_apps = True
    server.server.app_pool_size = 1
    server.server.app_custom_pool_size = 1
    try:
        server.start()
        g = Gallery(url=gallery_url, data_dir=data_dir, db_url=db_url, users=users,
                    server=server)
        sub = _submit(g, build_archive(base / "app", APP))
        _approve_api(g, sub["id"])
        with running_hub(base / "hub", hub_port, gallery_url, service_token) as hub:
            yield hub, g, sub["slug"]
    finally:
        server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


def _hub_login(page: Any, g: Gallery, who: str, next_path: str = "/") -> float:
    """Log ``who`` in from the gallery's login page through the Hub; returns the seconds from
    the click on "Sign in with JupyterHub" to the gallery page (Hub login form included)."""
    page.goto(f"{g.url}/login?next={next_path}")
    t0 = time.perf_counter()
    page.locator("#hub-login").click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/hub/login"))
    page.fill("#username_input", who)
    page.fill("#password_input", HUB_PASSWORD)
    page.locator("#login_submit").click()
    page.wait_for_url(lambda u: u.startswith(g.url) and "/login" not in u
                      and "oauth_callback" not in u)
    return time.perf_counter() - t0


def _me(page: Any, g: Gallery) -> dict[str, Any]:
    r = page.request.get(f"{g.url}/api/me")
    assert r.status == 200, r.text()
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.browser
@pytest.mark.kernel
@pytest.mark.slow
def test_hub_users_log_in_with_their_mapped_role_and_open_an_app(hub_gallery, chromium):
    hub, g, slug = hub_gallery
    timings: dict[str, float] = {}

    # a member of the Hub group "reviewers": gallery reviewer, sees the review queue
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        timings["hub"] = _hub_login(page, g, "rhea", "/review")
        assert page.url == f"{g.url}/review"
        page.wait_for_selector("h1")
        assert "Review" in page.locator("h1").first.inner_text()
        assert _me(page, g)["role"] == "reviewer"

        # the approved app opens for this user
        page.goto(f"{g.url}/app/{slug}/open")
        frame = page.locator("#app-view").element_handle(timeout=60_000).content_frame()
        frame.wait_for_selector("text=HUB-APP 3 x", timeout=APP_START_MS)

        # logout ends the gallery session and says so, with the Hub's logout link
        page.goto(f"{g.url}/")
        page.locator('form[action$="/logout"] button').click()
        page.wait_for_selector("#logged-out")
        assert "logged out of the gallery" in page.locator("#logged-out").inner_text()
        assert page.locator("#logged-out a").get_attribute("href") == f"{hub.url}logout"
        assert page.request.get(f"{g.url}/api/me").status == 401

        # still logged in to the Hub: signing in again needs no password (single sign-on)
        t0 = time.perf_counter()
        page.locator("#hub-login").click()
        page.wait_for_url(lambda u: u.startswith(g.url) and "/login" not in u
                          and "oauth_callback" not in u)
        timings["sso"] = time.perf_counter() - t0
        assert _me(page, g)["name"] == "rhea"
    finally:
        context.close()

    # a plain Hub user: viewer, no review queue
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        _hub_login(page, g, "paul")
        assert _me(page, g)["role"] == "viewer"
        assert page.goto(f"{g.url}/review").status == 403
    finally:
        context.close()

    # builtin login of a gallery account in the same gallery, for the figure
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(f"{g.url}/login")
        t0 = time.perf_counter()
        page.fill("#username", "vic")
        page.fill("#password", g.users["vic"].password)
        page.locator('form[action$="/login"] [type="submit"]').click()
        page.wait_for_url(lambda u: "/login" not in u)
        timings["builtin"] = time.perf_counter() - t0
    finally:
        context.close()
    print(f"\nlogin round trip: hub (with the Hub's form) {timings['hub']:.3f} s, hub again "
          f"(SSO) {timings['sso']:.3f} s, builtin {timings['builtin']:.3f} s, "
          f"load {os.getloadavg()[0]:.2f}")

    # the Hub made gallery users without a password: password login refused, with a code
    with httpx.Client(base_url=g.url) as web:
        web.get("/login")
        r = web.post("/login", data={"username": "rhea", "password": "whatever-it-is",
                                     "_xsrf": web.cookies["_xsrf"]})
        assert r.status_code == 401 and "NBA347" in r.text and "JupyterHub" in r.text
    cat = open_catalog(g.db_url)
    try:
        assert cat.has_password("rhea") is False
        created = [e for e in cat.list_audit(action="user.create") if e.target == "rhea"]
        assert created and created[0].actor == "jupyterhub:login"
    finally:
        cat.close()


@pytest.mark.browser
@pytest.mark.slow
def test_hub_tokens_work_on_the_api(hub_gallery):
    hub, g, _ = hub_gallery
    # a token of the user with access to the gallery service (what a single-user server has
    # in $JUPYTERHUB_API_TOKEN once server_token_scopes include the access scope)
    token = hub.user_token("paul", [f"access:services!service={SERVICE}"])
    me = httpx.get(f"{g.url}/api/me", headers={"Authorization": f"token {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "paul"

    # the role follows the Hub: paul joins "analysts", the next check of his identity (here a
    # new token: answers are cached per token) makes him an analyst; leaving demotes him again
    access = [f"access:services!service={SERVICE}"]
    assert hub.call("POST", "groups/analysts/users", json={"users": ["paul"]}).status_code \
        == 200
    me = httpx.get(f"{g.url}/api/me",
                   headers={"Authorization": f"token {hub.user_token('paul', access)}"})
    assert me.json()["role"] == "analyst", me.text
    assert hub.call("DELETE", "groups/analysts/users", json={"users": ["paul"]}).status_code \
        == 200
    me = httpx.get(f"{g.url}/api/me",
                   headers={"Authorization": f"Bearer {hub.user_token('paul', access)}"})
    assert me.json()["role"] == "viewer", me.text

    # a token without the access scope is refused with a code; a wrong one is 401
    narrow = hub.user_token("paul", ["read:users:name!user"])
    r = httpx.get(f"{g.url}/api/me", headers={"Authorization": f"token {narrow}"})
    assert r.status_code == 403 and r.json()["error"] == "NBA346", r.text
    r = httpx.get(f"{g.url}/api/me", headers={"Authorization": "token not-a-hub-token-at-all"})
    assert r.status_code == 401 and r.json()["error"] == "NBA310", r.text
    # gallery API tokens keep working beside the Hub
    r = httpx.get(f"{g.url}/api/me", headers={"Authorization": f"Bearer {g.users['ana'].token}"})
    assert r.status_code == 200 and r.json()["name"] == "ana"
    print(json.dumps({"hub_log_lines": len(hub.log.read_text().splitlines())}))
