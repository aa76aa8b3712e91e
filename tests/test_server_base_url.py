"""The gallery under a path prefix (``NbappsServer.base_url``), as behind JupyterHub, Binder or a
shared reverse proxy that keeps the prefix: routes, links, redirects, cookies, the API client.

The app runtime under a prefix (Voilà's ``base_url``, widgets over the WebSocket) is driven in
Chromium by ``tests/test_app_browser.py::test_gallery_and_app_under_a_base_url``.
"""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from nbapps.client import GalleryClient
from nbapps.runner.config import RunnerSettings
from nbapps.server.pages_auth import safe_next
from nbapps.server.routes import normalize_base_url
from tests.nbfactory import make_notebook
from tests.server_harness import ROOT, build_archive, thread_gallery, wait_checked

BASE = "/team/gallery/"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with thread_gallery(tmp_path_factory.mktemp("base-url"), args=[f"--base-url={BASE}"]) as g:
        yield g


def outside(html: str) -> list[str]:
    """Root-relative URLs of href/src/action attributes that leave the prefix."""
    return [u for u in re.findall(r'\s(?:href|src|action)="(/[^"]*)"', html)
            if not u.startswith(BASE)]


@pytest.mark.parametrize(("value", "expected"), [
    ("/", "/"), ("", "/"), ("team", "/team/"), ("/team/gallery", "/team/gallery/"),
    ("/user/ana.b/nbapps-gallery/", "/user/ana.b/nbapps-gallery/"), ("/a//b//", "/a/b/"),
])
def test_base_url_is_normalized(value, expected):
    assert normalize_base_url(value) == expected


@pytest.mark.parametrize("value", [
    "http://evil.example/x/", "//evil.example/", "/a/../b/", "/a/./b", "/a?b=1", "/a#b",
    "/a b/", "/a\\b/", "/caf\u00e9/",
])
def test_bad_base_url_is_refused(value):
    with pytest.raises(ValueError):
        normalize_base_url(value)


def test_bad_base_url_stops_the_server_with_a_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nbapps.cli.main", "serve", f"--data-dir={tmp_path}",
         "--port=0", "--base-url=http://evil.example/"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "NBA100" in proc.stderr and "base_url" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_next_after_login_stays_under_the_prefix():
    assert safe_next(f"{BASE}app/x?y=1", BASE) == f"{BASE}app/x?y=1"
    for hostile in ("/", "/lab", "/team/other/", "//evil.example/", "https://evil.example/",
                    f"{BASE[:-1]}\\..\\lab", ""):
        assert safe_next(hostile, BASE) == BASE, hostile


def test_runner_base_url_follows_the_gallery():
    assert RunnerSettings().app_base_url("sales") == "/apps/sales/"
    assert RunnerSettings(url_prefix=f"{BASE}apps/").app_base_url("sales") == \
        f"{BASE}apps/sales/"


def test_nothing_is_served_outside_the_prefix(gallery):
    origin = gallery.url[: -len(BASE.rstrip("/"))]
    with gallery.client() as c:
        for path in ("/", "/login", "/api/apps", "/healthz", "/static/nbapps.css"):
            assert c.get(origin + path).status_code == 404, path
        r = c.get(origin + BASE.rstrip("/"))
        assert r.status_code == 301 and r.headers["location"] == BASE
        assert c.get(f"{gallery.url}/healthz").status_code == 200


def test_pages_links_redirects_and_cookies_keep_the_prefix(gallery, tmp_path):
    with gallery.client("ana") as ana:
        nb = make_notebook(meta={"title": "Prefixed app", "tags": ["prefix"],
                                 "description": "Lives under a base URL."})
        sub = ana.post("/api/submissions", content=build_archive(tmp_path / "b", nb),
                       headers={"Content-Type": "application/gzip"})
        assert sub.status_code == 201, sub.text
        assert sub.json()["url"] == f"{gallery.url}/submissions/{sub.json()['id']}"
    sub_id = sub.json()["id"]
    wait_checked(gallery, sub_id)  # the gallery's own check, before anyone decides

    with gallery.browser() as anon:
        r = anon.get("/review")
        assert r.status_code == 302 and r.headers["location"] == f"{BASE}login?next={BASE}review"
        page = anon.get("/login")
        assert f'action="{BASE}login"' in page.text and outside(page.text) == []
        cookie = page.headers["set-cookie"]
        assert cookie.startswith("_xsrf=") and f"Path={BASE}" in cookie

    with gallery.browser() as rita:
        r = rita.http.post("/login", data={"username": "rita",
                                           "password": gallery.users["rita"].password,
                                           "next": f"{BASE}review", "_xsrf": rita.xsrf()})
        assert r.status_code == 302 and r.headers["location"] == f"{BASE}review"
        session = [c for c in r.headers.get_list("set-cookie") if c.startswith("nbapps-session")]
        assert session and f"Path={BASE}" in session[0]
        for path in ("/", "/review", f"/submissions/{sub_id}", "/account", "/my"):
            html = rita.get(path)
            assert html.status_code == 200, path
            assert outside(html.text) == [], path
        assert f'href="{BASE}submissions/{sub_id}"' in rita.get("/review").text
        frame = rita.get(f"/submissions/{sub_id}")
        assert f'src="{BASE}submissions/{sub_id}/notebook"' in frame.text
        assert f'href="{BASE}static/nbapps.css?v=' in frame.text
        assert rita.get(f"{BASE}static/nbapps.css".removeprefix(BASE)).status_code == 200
        r = rita.post_form(f"/submissions/{sub_id}/decision",
                           {"decision": "approve", "comment": "fine"})
        assert r.headers["location"] == f"{BASE}submissions/{sub_id}?done=approve"
        r = rita.post_form("/logout")
        assert r.status_code == 302 and r.headers["location"] == f"{BASE}login?logged_out=1"

    with gallery.browser("adam") as adam:
        for path in ("/admin/users", "/admin/audit", "/account"):
            html = adam.get(path)
            assert html.status_code == 200 and outside(html.text) == [], path
        assert f'action="{BASE}admin/users/vic"' in adam.get("/admin/users").text

    with gallery.browser("vic") as vic:
        home = vic.get("/")
        assert 'href="/team/gallery/app/prefixed-app"' in home.text
        assert outside(home.text) == []
        assert outside(vic.get("/?tag=prefix").text) == []
        app = vic.get("/app/prefixed-app")
        # "Open app" goes to the app frame (<base>app/<slug>/open), itself under the prefix
        assert f'"{BASE}app/prefixed-app/open"' in app.text and outside(app.text) == []


def test_api_client_takes_the_prefixed_url(gallery):
    with GalleryClient(gallery.url, gallery.users["adam"].token) as admin:
        assert admin.me()["name"] == "adam"
    with GalleryClient(gallery.url + "/", gallery.users["vic"].token) as vic:
        assert isinstance(vic.apps()["items"], list)
