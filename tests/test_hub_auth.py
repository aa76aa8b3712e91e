"""JupyterHub as identity provider: a real Hub on loopback, the gallery as its external service.

The Hub (``python -m jupyterhub``, DummyAuthenticator, no spawning) runs without
configurable-http-proxy: its proxy class is a no-op written in the test's config, and browsers
talk to the Hub's own port. The gallery (in a thread, app runners on) is registered as the
service ``nbapps`` with its callback URL; Chromium reaches it as ``localhost`` and the Hub as
``127.0.0.1``, so the two never share cookies (cookies ignore ports). Hub users log in through
the Hub's login page and OAuth and land in the gallery with the role ``role_map`` gives them.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from nbapps.accounts import Role
from nbapps.catalog import open_catalog
from nbapps.errors import NbappsError
from nbapps.server.hub_auth import HubUsers
from nbapps.server.hub_config import HubConfiguration, HubUser, has_access, role_for
from nbapps.server.identity import SESSION_COOKIE, IdentityProvider
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
#: the module's gallery re-checks Hub sessions after 1 s, keeps them 10 s after their last
#: check while the Hub does not answer, and gives up on a Hub call after 3 s (the grace must
#: outlast the timed-out call by a margin a loaded CI machine keeps: with 4 s the "kept"
#: window was missed once in a clean-clone CI)
RECHECK_S, GRACE_S, HUB_TIMEOUT_S = 1, 10, 3


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
    assert (s.recheck_seconds, s.recheck_grace_seconds) == (60, 300)  # the defaults
    with pytest.raises(NbappsError) as bad:
        HubConfiguration(recheck_seconds=-1).settings()
    assert bad.value.code == "NBA342" and "recheck_seconds" in bad.value.message


class _Cookies:
    """What :meth:`IdentityProvider.session` reads of a request: one signed cookie's value."""

    def __init__(self, value: str) -> None:
        self.value = value.encode()

    def get_signed_cookie(self, name: str, value: str | None = None,
                          max_age_days: float = 31, min_version: int | None = None
                          ) -> bytes | None:
        return self.value if name == SESSION_COOKIE else None


def test_a_hub_session_cookie_holds_the_hub_token_sealed_not_in_clear():
    settings = HubConfiguration(api_url="http://127.0.0.1:9/hub/api", api_token="t" * 32,
                                client_id="service-nbapps",
                                recheck_seconds=1).settings()
    users = HubUsers(None, settings, cookie_secret=secrets.token_bytes(32))
    hub_token = secrets.token_hex(16)  # what JupyterHub's tokens look like
    session_id = secrets.token_urlsafe(32)
    value = users.session_cookie_value(session_id, hub_token)
    assert hub_token not in value and session_id in value
    identity = IdentityProvider(users)
    session = identity.session(_Cookies(value))
    assert session is not None and session.id == session_id and session.hub
    assert users.unseal(session.hub) == hub_token
    # another cookie secret (another gallery) cannot open it
    stranger = HubUsers(None, settings, cookie_secret=secrets.token_bytes(32))
    assert stranger.unseal(session.hub) is None
    # a password login's cookie is the session id alone
    plain = identity.session(_Cookies(session_id))
    assert plain is not None and plain.id == session_id and plain.hub is None
    # the identity cache does not keep a Hub session's answer past the re-check interval
    assert identity._by_session.ttl == 1.0


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


def test_a_hung_hub_holds_one_recheck_and_sessions_follow_the_grace_rule(tmp_path):
    """Without a Hub: a socket that accepts connections and never answers (a hung Hub), and a
    port nobody listens on (a Hub that is down)."""
    _, db_url, _ = new_data_dir(tmp_path)
    cat = open_catalog(db_url)
    hung = socket.socket()
    pool = ThreadPoolExecutor(1)
    try:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # the kernel completes the connections; nobody ever reads them
        config = {"api_token": "t" * 32, "client_id": "service-nbapps", "timeout": 3,
                  "recheck_seconds": 0, "recheck_grace_seconds": 60}
        hub = HubUsers(cat, HubConfiguration(
            api_url=f"http://127.0.0.1:{hung.getsockname()[1]}/hub/api", **config).settings(),
            cookie_secret=secrets.token_bytes(32))
        identity = IdentityProvider(hub)
        sessions = {}
        for name in ("vic", "ana"):  # as the OAuth callback opens them (checked just now)
            session_id = hub.open_session(hub.user_by_name(name), 1)
            value = hub.session_cookie_value(session_id, secrets.token_hex(16))
            sessions[name] = identity.session(_Cookies(value))
        # recheck_seconds=0: the next look-up asks the Hub, which does not answer
        first = pool.submit(hub.user_by_session, sessions["vic"])
        _wait_for("a re-check waiting on the Hub for a second", lambda: any(
            time.monotonic() - started > 1.0 for started in hub._asking.values()))
        # another session does not wait on the hung Hub: kept (grace), the first still waits
        assert getattr(hub.user_by_session(sessions["ana"]), "name", None) == "ana"
        assert not first.done()
        assert getattr(first.result(30), "name", None) == "vic"  # timed out: kept (grace)

        # a gallery process that has not checked a session yet (restarted) while the Hub is
        # down: refused, but not ended (it resumes once the Hub confirms its token)
        restarted = HubUsers(cat, HubConfiguration(
            api_url=f"http://127.0.0.1:{free_port()}/hub/api", **config).settings(),
            cookie_secret=secrets.token_bytes(32))
        fresh = restarted.open_session(restarted.user_by_name("rob"), 1)
        value = restarted.session_cookie_value(fresh, secrets.token_hex(16))
        session = identity.session(_Cookies(value))
        assert session is not None
        restarted._checks.clear()  # what a restart forgets
        assert restarted.user_by_session(session) is None
        assert cat.session_user(fresh) is not None
        # a password login's session never asks the Hub
        plain = restarted.open_session(restarted.user_by_name("rob"), 1)
        assert getattr(restarted.user_by_session(identity.session(_Cookies(plain))),
                       "name", None) == "rob"
    finally:
        pool.shutdown(wait=True)
        hung.close()
        cat.close()


def test_background_rechecks_cover_the_sessions_seen_within_the_window_only(tmp_path):
    """:meth:`HubUsers.recheck_watched` asks about due sessions whose cookie this process saw
    within the window (its own asking does not count as a use), and forgets the others."""
    _, db_url, _ = new_data_dir(tmp_path)
    cat = open_catalog(db_url)
    try:
        hub = HubUsers(cat, HubConfiguration(
            api_url=f"http://127.0.0.1:{free_port()}/hub/api", api_token="t" * 32,
            client_id="service-nbapps", timeout=3, recheck_seconds=0,
            recheck_grace_seconds=60).settings(), cookie_secret=secrets.token_bytes(32))
        session_id = hub.open_session(hub.user_by_name("vic"), 1)
        hub.session_cookie_value(session_id, secrets.token_hex(16))
        (seen_at_login,) = [c.seen for c in hub._checks.values()]
        assert hub.recheck_watched(window=3600) == 1  # due at once (recheck_seconds=0)
        (check,) = hub._checks.values()
        assert check.warned == "kept" and check.seen == seen_at_login  # the Hub is down
        assert cat.session_user(session_id) is not None  # kept within the grace, not ended
        time.sleep(0.01)
        assert hub.recheck_watched(window=0.005) == 0 and not hub._checks
    finally:
        cat.close()


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
        "--HubConfiguration.cache_seconds=0.5",
        f"--HubConfiguration.recheck_seconds={RECHECK_S}",
        f"--HubConfiguration.recheck_grace_seconds={GRACE_S}",
        f"--HubConfiguration.timeout={HUB_TIMEOUT_S}"])
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


# -- gallery sessions follow the Hub ----------------------------------------------------------

def _wait_for(what: str, probe: Any, timeout: float = 30.0) -> Any:
    """Poll ``probe()`` until it returns something true (re-checks are due after 1 s, plus the
    Hub's own answer times); fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)  # polling the gallery, not synchronisation


@contextmanager
def _new_page(chromium: Any) -> Iterator[tuple[Any, Any]]:
    """A new Chromium context (60 s timeouts) and its page, closed on exit."""
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    try:
        yield context, context.new_page()
    finally:
        context.close()


def _me_status(page: Any, g: Gallery) -> tuple[int, str]:
    r = page.request.get(f"{g.url}/api/me")
    return r.status, (r.json().get("role", "") if r.status == 200 else "")


def _session_cookie(context: Any) -> str:
    """The value tornado signed into the session cookie (``2|1:0|10:<ts>|<name>|<len>:<b64>|``)."""
    raw = next(c["value"] for c in context.cookies() if c["name"] == SESSION_COOKIE)
    return base64.b64decode(raw.strip('"').split("|")[4].split(":", 1)[1]).decode()


class _Messages(logging.Handler):
    """The gallery's log lines about Hub sessions (the server sends ``nbapps`` logs to stderr
    only, so the test listens on the module's logger itself)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def __enter__(self) -> _Messages:
        logger = logging.getLogger("nbapps.server.hub_auth")
        self._level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("nbapps.server.hub_auth")
        logger.removeHandler(self)
        logger.setLevel(self._level)


@pytest.mark.browser
@pytest.mark.slow
def test_a_hub_logout_or_role_change_reaches_the_gallery_session(hub_gallery, chromium):
    hub, g, _ = hub_gallery
    with _new_page(chromium) as (context, page):
        _hub_login(page, g, "ivan")
        assert _me_status(page, g) == (200, "viewer")
        # the cookie binds the session to the Hub token, sealed (JupyterHub's tokens are 32
        # hex digits: none in the cookie)
        value = _session_cookie(context)
        session_id, _, sealed = value.partition(".")
        assert sealed and not re.search(r"[0-9a-f]{32}", value), value

        # a Hub group change: the next re-check maps the gallery role again
        access = hub.call("POST", "groups/analysts/users", json={"users": ["ivan"]})
        assert access.status_code == 200, access.text
        _wait_for("the analyst role", lambda: _me_status(page, g) == (200, "analyst"))
        assert hub.call("DELETE", "groups/analysts/users",
                        json={"users": ["ivan"]}).status_code == 200
        _wait_for("the viewer role", lambda: _me_status(page, g) == (200, "viewer"))

        # logging out of the Hub deletes its OAuth token: the gallery session ends at the next
        # re-check, and the gallery page asks for a login again, through the Hub's form
        with _Messages() as messages:
            page.goto(f"{hub.url}logout")
            _wait_for("the end of the gallery session",
                      lambda: _me_status(page, g)[0] == 401)
        assert any("ivan ended: JupyterHub no longer accepts" in m for m in messages.lines)
        page.goto(f"{g.url}/review")
        assert page.url.startswith(f"{g.url}/login?next=")
        page.locator("#hub-login").click()
        page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/hub/login"))
    cat = open_catalog(g.db_url)
    try:  # ended in the catalog, so every replica refuses it (not only this one's cache)
        assert cat.count_sessions("ivan") == 0
        assert cat.session_user(session_id) is None
    finally:
        cat.close()


@pytest.mark.browser
@pytest.mark.slow
def test_a_hub_logout_ends_the_app_tickets_of_that_login_without_a_gallery_request(
        hub_gallery, chromium):
    """A viewer who only has an app open logs out of the Hub. The app's requests carry a ticket
    bound to the gallery session, never its cookie, so no request re-checks the session: the
    gallery's background re-check does, ends the session, and the ticket is refused (it used to
    keep the app for its lifetime, 2 h)."""
    hub, g, slug = hub_gallery
    with _new_page(chromium) as (_, page):
        _hub_login(page, g, "una")
        frame = page.request.get(f"{g.url}/app/{slug}/open")  # the frame issues the ticket
        src = re.search(r'<iframe id="app-view"[^>]* src="([^"]+)"', frame.text())
        assert frame.status == 200 and src, frame.text()[:500]
        ticket = src[1].split("/~t/")[1].split("/")[0]
        status = f"{g.url}/apps/{slug}/~t/{ticket}/~status"
        with httpx.Client(timeout=60) as plain, _Messages() as messages:  # no cookie
            assert plain.get(status).status_code == 200
            page.goto(f"{hub.url}logout")  # the Hub's page: the gallery gets no request
            refused = _wait_for("the ticket refused", lambda: (
                r if (r := plain.get(status)).status_code != 200 else None))
        assert refused.status_code == 403 and "NBA340" in refused.text, refused.text[:300]
        assert any("una ended: JupyterHub no longer accepts" in m for m in messages.lines)


@pytest.mark.browser
@pytest.mark.slow
def test_hub_sessions_outlive_a_hub_outage_only_for_the_grace_period(hub_gallery, chromium):
    hub, g, _ = hub_gallery
    context = chromium.new_context()
    context.set_default_timeout(60_000)
    page = context.new_page()
    stopped = False
    builtin = httpx.Client(base_url=g.url)
    try:
        builtin.get("/login")
        assert builtin.post("/login", data={
            "username": "vic", "password": g.users["vic"].password,
            "_xsrf": builtin.cookies["_xsrf"]}).status_code == 302
        _hub_login(page, g, "hana")
        with _Messages() as messages:
            os.kill(hub.process.pid, signal.SIGSTOP)  # the Hub stops answering (timeouts)
            stopped = True
            # within the grace period the session is kept (the Hub was asked and did not
            # answer: logged), then refused until the Hub answers
            _wait_for("a kept session", lambda: _me_status(page, g) == (200, "viewer")
                      and any("session of hana is kept" in m for m in messages.lines))
            _wait_for("the refused session", lambda: _me_status(page, g)[0] == 401)
            assert any("session of hana is refused until it answers" in m
                       for m in messages.lines), messages.lines
            # built-in accounts and gallery API tokens do not need the Hub
            assert builtin.get("/api/me").json()["name"] == "vic"
            r = httpx.get(f"{g.url}/api/me",
                          headers={"Authorization": f"Bearer {g.users['ana'].token}"})
            assert r.status_code == 200 and r.json()["name"] == "ana"
            # the Hub answers again and confirms the token: the same session goes on
            os.kill(hub.process.pid, signal.SIGCONT)
            stopped = False
            _wait_for("the session again", lambda: _me_status(page, g) == (200, "viewer"))
    finally:
        if stopped:
            os.kill(hub.process.pid, signal.SIGCONT)
        builtin.close()
        context.close()
