"""XSRF refusals, escaping of hostile input, security headers, login rate limiting, sessions."""
from __future__ import annotations

import json
import re
import time

import pytest

from tests.nbfactory import make_notebook
from tests.server_harness import build_archive, catalog_of, thread_gallery, wait_checked

HOSTILE_USER = "testuser<'&\">"
HOSTILE_TITLE = "<script>alert('t')</script>"
HOSTILE_DESC = "<img src=x onerror=alert(1)> & \"quoted\" 'single'"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("security"),
                        args=["--NbappsServer.login_max_failures=3"]) as g:
        yield g


def test_form_post_without_xsrf_is_refused(gallery):
    with gallery.browser("adam") as adam:
        r = adam.post_form("/admin/users", {"name": "mallory", "role": "admin"}, xsrf=False)
        assert r.status_code == 403 and "NBA330" in r.text
        r = adam.http.post("/admin/users", data={"name": "mallory", "role": "admin",
                                                 "_xsrf": "2|00000000|deadbeef|1"})
        assert r.status_code == 403 and "NBA330" in r.text
        assert "mallory" not in adam.get("/admin/users").text


def test_cookie_api_post_needs_xsrf_header_bearer_does_not(gallery):
    with gallery.browser("ana") as ana:
        r = ana.api("POST", "/api/me/tokens", json={"label": "x"}, xsrf=False)
        assert r.status_code == 403 and r.json()["error"] == "NBA330"
        r = ana.api("POST", "/api/me/tokens", json={"label": "x"})  # X-XSRFToken header
        assert r.status_code == 201
    with gallery.client("ana") as c:  # Bearer token: no cookie involved, no XSRF needed
        assert c.post("/api/me/tokens", json={"label": "y"}).status_code == 201


def test_invalid_bearer_never_falls_back_to_the_cookie(gallery):
    with gallery.browser("adam") as adam:
        r = adam.api("GET", "/api/me", headers={"Authorization": "Bearer nba_forged"},
                     xsrf=False)
        assert r.status_code == 401 and r.json()["error"] == "NBA310"
        # a forged token on a state-changing request: no XSRF bypass through the cookie
        r = adam.api("POST", "/api/users", json={"name": "mallory", "role": "admin"},
                     headers={"Authorization": "Bearer nba_forged"}, xsrf=False)
        assert r.status_code == 401


def test_cross_origin_form_post_is_refused(gallery):
    with gallery.browser("adam") as adam:
        r = adam.post_form("/admin/users", {"name": "mallory2", "role": "admin"},
                           headers={"Origin": "https://evil.example",
                                    "Sec-Fetch-Site": "cross-site"})
        assert r.status_code == 403 and "NBA330" in r.text


def test_logout_needs_post_with_xsrf(gallery):
    with gallery.browser("vic") as vic:
        r = vic.get("/logout")
        assert r.status_code == 405 and "NBA332" in r.text
        assert vic.post_form("/logout", xsrf=False).status_code == 403
        assert vic.get("/").status_code == 200  # still logged in
        assert vic.post_form("/logout").status_code == 302
        assert vic.get("/").status_code == 302  # logged out


def test_security_headers(gallery):
    with gallery.browser("vic") as vic:
        for path in ("/", "/login", "/account", "/nonexistent"):
            h = vic.get(path).headers
            assert "frame-ancestors 'none'" in h["Content-Security-Policy"], path
            assert "script-src 'self'" in h["Content-Security-Policy"]
            assert "unsafe-inline" not in h["Content-Security-Policy"]
            assert h["X-Frame-Options"] == "DENY"
            assert h["X-Content-Type-Options"] == "nosniff"
            assert h["Referrer-Policy"] == "same-origin"
        session = [c for c in vic.http.cookies.jar if c.name == "nbapps-session"][0]
        assert session.has_nonstandard_attr("HttpOnly") or "httponly" in str(
            session._rest).lower()
    with gallery.client("vic") as c:
        h = c.get("/api/apps").headers
        assert h["Content-Type"].startswith("application/json")
        assert "sandbox" in h["Content-Security-Policy"]


def test_login_rate_limit_and_open_redirect(gallery):
    with gallery.browser() as anon:
        for _ in range(3):
            r = anon.login("rob", "wrong-password")
            assert r.status_code == 401 and "Wrong user name or password" not in r.text \
                or r.status_code == 401
        r = anon.login("rob", gallery.users["rob"].password)  # right password, too late
        assert r.status_code == 429 and "Retry-After" in r.headers
        assert "too many" in r.text.lower()
    with gallery.browser() as anon:
        r = anon.http.post("/login", data={"username": "rita",
                                           "password": gallery.users["rita"].password,
                                           "next": "https://evil.example/x",
                                           "_xsrf": anon.xsrf()})
        assert r.status_code == 302 and r.headers["location"] == "/"
        assert anon.get("/login?next=//evil.example").headers["location"] == "/"


def test_hostile_names_and_titles_are_escaped(gallery, tmp_path):
    g = gallery
    with catalog_of(g) as (cat, _):
        cat.create_user(HOSTILE_USER, "analyst", "hostile-password-1", actor="test")
        token, _ = cat.create_token(HOSTILE_USER, actor="test")
    meta = {"title": HOSTILE_TITLE, "description": HOSTILE_DESC, "tags": ["<b>bold</b>"]}
    data = build_archive(tmp_path / "h", make_notebook(meta=meta))
    with g.client() as c:
        r = c.post("/api/submissions", content=data,
                   headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text
        vid = r.json()["id"]
        slug = r.json()["app"]
    wait_checked(g, vid)  # the gallery's own check, before anyone decides
    with g.browser("rita") as rita:
        pages = [rita.get("/review").text, rita.get(f"/submissions/{vid}").text]
        rita.post_form(f"/submissions/{vid}/comment", {"comment": "<script>x()</script>"})
        pages.append(rita.get(f"/submissions/{vid}").text)
        assert rita.post_form(f"/submissions/{vid}/decision",
                              {"decision": "approve", "comment": HOSTILE_DESC}
                              ).status_code == 302
    with g.browser() as author:
        author.login(HOSTILE_USER, "hostile-password-1")
        pages += [author.get("/my").text, author.get("/account").text]
    with g.browser("adam") as adam:
        pages += [adam.get("/").text, adam.get(f"/app/{slug}").text,
                  adam.get("/admin/users").text, adam.get("/admin/audit").text,
                  adam.get("/?q=" + HOSTILE_TITLE).text]
    for html in pages:
        assert "<script>alert" not in html and "<script>x()" not in html
        assert "<img src=x" not in html and "<b>bold</b>" not in html
        assert HOSTILE_USER not in html
        # no inline script on our pages: only our own static files (script-src 'self')
        tags = re.findall(r"<script\b[^>]*>[^<]*</script>", html)
        assert len(tags) == len(re.findall(r"<script\b", html))
        for tag in tags:
            assert re.fullmatch(r'<script src="/static/[\w.-]+(\?v=\w+)?"( defer)?></script>',
                                tag), tag
    joined = "\n".join(pages)
    assert "&lt;script&gt;alert(" in joined
    assert "testuser&lt;&#39;&amp;&#34;&gt;" in joined
    assert "&lt;img src=x onerror=alert(1)&gt;" in joined


def test_submitted_notebook_is_sanitized_in_its_sandbox(gallery, tmp_path):
    import nbformat

    g = gallery
    nb = make_notebook(meta={"title": "Sneaky", "description": "d"}, extra=[
        nbformat.v4.new_markdown_cell("# Heading kept\n\n<script>alert(1)</script>"
                                      "<img src=x onerror=alert(2)> <a href='javascript:x()'>"
                                      "link</a>")])
    # the hostile output comes from the gallery's own run of the notebook (what is shown)
    nb.cells.insert(-1, nbformat.v4.new_code_cell(
        "from IPython.display import HTML, display\n"
        "display(HTML(\"<table><tr><td onclick='x()'>cell</td></tr></table>\"\n"
        "             \"<script>alert(3)</script><iframe src='https://evil.example'></iframe>\"))"))
    data = build_archive(tmp_path / "s", nb)
    with g.client("ana") as c:
        vid = c.post("/api/submissions", content=data).json()["id"]
    assert wait_checked(g, vid)["check"]["state"] == "passed"
    with g.browser("rita") as rita:
        r = rita.get(f"/submissions/{vid}/notebook")
    assert r.status_code == 200
    body = r.text[r.text.find("<body"):]
    assert "<h1" in body and "Heading kept" in body and "<td>cell</td>" in body
    # the gallery's run saved widget state: the only scripts are the gallery's own widget
    # renderer (from its static folder) and the widget state as data, never the notebook's
    ours = re.compile(r'<script (type="application/vnd\.jupyter\.widget-(view|state)\+json"'
                      r'|src="[^"]*/static/widgets/[^"]*"[^>]*)>.*?</script>', re.S)
    assert "alert(3)" not in "".join(m.group(0) for m in ours.finditer(body))
    assert not re.search(r"<(script|iframe)\b", ours.sub("", body))
    # the markdown's source is shown too, escaped: no tag carries a handler or a script URL
    tags = re.findall(r"<[a-zA-Z][^>]*>", body)
    assert not [t for t in tags if re.search(r"\s(onerror|onclick)\s*=|javascript:", t)]
    assert "&lt;img src=x onerror=alert(2)&gt;" in body
    assert r.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert "frame-ancestors 'self'" in r.headers["Content-Security-Policy"]


def test_new_password_ends_the_old_sessions(tmp_path):
    """`nbapps user passwd` (here: the catalog call it makes, from another process's point of
    view) logs out every browser that logged in with the old password; a new login works."""
    with thread_gallery(tmp_path) as g:
        with g.browser("vic") as old, g.browser("vic") as other:
            assert old.get("/account").status_code == 200
            assert other.get("/account").status_code == 200
            with catalog_of(g) as (cat, _):
                cat.set_password("vic", "a-brand-new-password-1", actor="test")
            # the server caches each session's user for a few seconds, each on its own clock
            deadline = time.monotonic() + 15
            for browser in (old, other):
                while browser.get("/account").status_code == 200 and time.monotonic() < deadline:
                    time.sleep(0.25)
            r = old.get("/account")
            assert r.status_code == 302 and r.headers["location"].startswith("/login")
            assert other.get("/account").status_code == 302
        with g.browser() as fresh:
            assert fresh.login("vic", "a-brand-new-password-1").status_code == 302
            assert fresh.get("/account").status_code == 200


def test_session_cookie_does_not_reveal_the_stamp_source(gallery):
    with gallery.browser("vic") as vic:
        me = vic.api("GET", "/api/me", xsrf=False).json()
    assert "stamp" not in json.dumps(me) and "session" not in json.dumps(me)
