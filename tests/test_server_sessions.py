"""Server-side sessions: logout, an admin's "end sessions", disabling a user and a new password
end a browser session for good; a copy of its cookie replayed later is nobody.

(A session ended on another replica, i.e. in the catalog directly, ends here within the identity
cache period: ``test_server_security.test_new_password_ends_the_old_sessions``.)"""
from __future__ import annotations

import json

import httpx
import pytest
from tornado.web import create_signed_value

from nbapps.server.identity import SESSION_COOKIE
from tests.server_harness import catalog_of, thread_gallery


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("sessions")) as g:
        yield g


def session_cookie(browser) -> str:
    return next(c.value for c in browser.http.cookies.jar if c.name == SESSION_COOKIE)


def replay(g, cookie: str) -> tuple[httpx.Response, httpx.Response]:
    """A fresh client sending only a copied session cookie: (API answer, page answer)."""
    with httpx.Client(base_url=g.url, follow_redirects=False, timeout=60,
                      cookies={SESSION_COOKIE: cookie}) as c:
        return c.get("/api/me"), c.get("/account")


def test_a_cookie_replayed_after_logout_is_nobody(gallery):
    with gallery.browser("vic") as vic:
        cookie = session_cookie(vic)
        api, page = replay(gallery, cookie)
        assert api.status_code == 200 and api.json()["name"] == "vic"
        assert page.status_code == 200
        assert vic.post_form("/logout").status_code == 302
    api, page = replay(gallery, cookie)
    assert api.status_code == 401 and api.json()["error"] == "NBA300"
    assert page.status_code == 302 and page.headers["location"].startswith("/login?next=")
    with catalog_of(gallery) as (cat, _):
        assert cat.list_audit(action="logout")[0].actor == "vic"


def test_each_login_is_its_own_session(gallery):
    with gallery.browser("ana") as laptop, gallery.browser("ana") as phone:
        assert session_cookie(laptop) != session_cookie(phone)
        laptop.post_form("/logout")
        assert phone.get("/account").status_code == 200  # logging out one keeps the other
        assert laptop.get("/account").status_code == 302


def test_admin_ends_sessions_from_the_page_and_the_api(gallery):
    with gallery.browser("adam") as adam, gallery.browser("rita") as rita:
        cookie = session_cookie(rita)
        assert adam.get("/admin/users").text.count("End sessions") >= 2
        r = adam.post_form("/admin/users/rita", {"end_sessions": "1"})
        assert r.status_code == 302
        assert rita.get("/account").status_code == 302  # at once on this server
        assert replay(gallery, cookie)[0].status_code == 401
    with gallery.browser("rob") as rob, gallery.client("adam") as api:
        r = api.patch("/api/users/rob", json={"end_sessions": True})
        assert r.status_code == 200 and r.json()["sessions_ended"] == 1
        assert rob.get("/account").status_code == 302
        assert api.patch("/api/users/rob", json={"end_sessions": "yes"}).status_code == 400
    with gallery.client("rob") as rob_api:  # API tokens are not sessions: they still work
        assert rob_api.get("/api/me").status_code == 200
    with catalog_of(gallery) as (cat, _):
        ends = cat.list_audit(action="user.sessions_end")
        assert [(e.actor, e.target) for e in ends[:2]] == [("adam", "rob"), ("adam", "rita")]


def test_disabling_a_user_ends_their_session(gallery):
    with gallery.browser("alf") as alf, gallery.client("adam") as api:
        assert alf.get("/account").status_code == 200
        assert api.patch("/api/users/alf", json={"disabled": True}).status_code == 200
        assert alf.get("/account").status_code == 302
        assert api.patch("/api/users/alf", json={"disabled": False}).status_code == 200
        assert alf.get("/account").status_code == 302  # re-enabling does not revive it


def test_cookies_of_the_old_format_are_refused(gallery):
    """Before server-side sessions the cookie held the user name and a password stamp: such a
    cookie, even correctly signed, opens nothing (users log in once after the upgrade)."""
    secret = (gallery.data_dir / "cookie_secret").read_bytes().strip()
    old = create_signed_value(secret, SESSION_COOKIE,
                              json.dumps({"n": "adam", "s": "0" * 24})).decode()
    api, page = replay(gallery, old)
    assert api.status_code == 401 and page.status_code == 302
    forged = create_signed_value(b"not-the-secret" * 4, SESSION_COOKIE, "A" * 43).decode()
    assert replay(gallery, forged)[0].status_code == 401
