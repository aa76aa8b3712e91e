"""Apps on origins of their own (:mod:`nbapps.server.app_origins`): the settings, and in
Chromium, a gallery opened as ``localhost`` showing its app from ``<slug>.localhost`` while app
code there cannot use the viewer's gallery session, and the app host answers nothing else."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

from nbapps.errors import UsageError
from nbapps.server.app_isolation import APP_NOTICE_CSP, APP_PAGE_CSP, on_app_origin
from nbapps.server.app_origins import AppOrigins
from tests.chromium import launched_chromium
from tests.server_harness import Gallery
from tests.test_app_browser import (
    _loan_gallery,
    _login,
    _new_page,
    _wait_app_rendered,
    app_view,
    step_term_slider,
)


def _request(host: str, protocol: str = "http") -> HTTPServerRequest:
    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/", "HTTP/1.1"),
                                headers=HTTPHeaders({"Host": host}))
    request.protocol = protocol
    return request


def test_auto_gives_apps_their_own_localhost_origin_only_at_localhost():
    auto = AppOrigins.from_settings("auto", "")
    assert auto.origin(_request("localhost:8866"), "loan") == "http://loan.localhost:8866"
    assert auto.origin(_request("LOCALHOST"), "loan") == "http://loan.localhost"
    for host in ("127.0.0.1:8866", "gallery.example.org", "[::1]:8866"):
        assert auto.origin(_request(host), "loan") is None, host
    # previews of versions under review, and names that cannot be a DNS label, stay sandboxed
    for slug in ("loan~v3", "x" * 64, "-loan"):
        assert auto.origin(_request("localhost:8866"), slug) is None, slug
    assert auto.slug_of(_request("loan.localhost:8866")) == "loan"
    for host in ("localhost:8866", "a.b.localhost", "loan.localhost.evil.org", "evil.org"):
        assert auto.slug_of(_request(host)) is None, host
    assert auto.framing_origin(_request("loan.localhost:8866")) == "http://localhost:8866"
    behind = AppOrigins.from_settings("auto", "", "/services/nbapps/")  # a Hub, a Jupyter proxy
    assert behind.origin(_request("localhost:8000"), "loan") is None
    off = AppOrigins.from_settings("", "")
    assert off.origin(_request("localhost:8866"), "loan") is None
    assert off.slug_of(_request("loan.localhost:8866")) is None and off.host_pattern() is None


def test_a_host_name_needs_public_url_and_is_checked():
    named = AppOrigins.from_settings("Apps.Example-Apps.org.", "https://gallery.example.org/x/")
    request = _request("gallery.example.org", "https")
    assert named.origin(request, "loan") == "https://loan.apps.example-apps.org"
    assert named.slug_of(_request("loan.apps.example-apps.org")) == "loan"
    assert named.slug_of(_request("apps.example-apps.org")) is None
    assert named.framing_origin(_request("loan.apps.example-apps.org")) == \
        "https://gallery.example.org"
    for host, public in (("apps.example.org", ""), ("https://apps.example.org", "http://g"),
                         ("apps example", "http://g"), ("apps.example.org", "ftp://g")):
        with pytest.raises(UsageError) as err:
            AppOrigins.from_settings(host, public)
        assert err.value.code == "NBA390", (host, public)


def test_an_app_hosts_csp_names_the_gallery_as_its_framer():
    page = on_app_origin(APP_PAGE_CSP, "http://localhost:8866")
    assert "allow-same-origin" in page and "frame-ancestors http://localhost:8866" in page
    assert "frame-ancestors 'self'" not in page
    assert "worker-src blob:;" in page  # no service worker outliving a rollback
    notice = on_app_origin(APP_NOTICE_CSP, "http://localhost:8866")
    assert "allow-same-origin" not in notice  # the proxy's own pages stay opaque
    assert "frame-ancestors http://localhost:8866" in notice


# -- in Chromium --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Iterator[tuple[Gallery, str]]:
    with _loan_gallery(tmp_path_factory.mktemp("app-origins")) as (g, slug):
        yield dataclasses.replace(g, url=g.url.replace("127.0.0.1", "localhost", 1)), slug


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with launched_chromium() as browser:
        yield browser


@pytest.mark.browser
@pytest.mark.kernel
def test_an_app_on_its_own_origin_works_and_cannot_use_the_viewers_session(gallery, chromium):
    g, slug = gallery
    port = g.url.rsplit(":", 1)[1]
    app_origin = f"http://{slug}.localhost:{port}"
    context, page = _new_page(chromium)
    try:
        _login(page, g, "vic")
        page.goto(f"{g.url}/app/{slug}/open")
        src = page.get_attribute("#app-view", "src") or ""
        assert src.startswith(f"{app_origin}/apps/{slug}/~t/"), src
        assert "allow-same-origin" in (page.get_attribute("#app-view", "sandbox") or "")
        _wait_app_rendered(page)
        step_term_slider(page)  # its kernel socket works through the app's host
        app = app_view(page)
        assert app.evaluate("() => location.origin") == app_origin

        # what app code can do with the viewer's gallery session there: nothing
        assert app.evaluate("() => document.cookie") == ""
        # a real script of the page's own (a valid service worker script but for the CSP)
        registered = app.evaluate("""() => navigator.serviceWorker.register(JSON.parse(
            document.getElementById("jupyter-config-data").textContent).baseUrl
            + "voila/static/voila.js").then(() => "registered", e => e.name)""")
        assert registered == "SecurityError", registered
        read = app.evaluate(f"""() => fetch("{g.url}/api/me", {{credentials: "include"}})
            .then(r => "read " + r.status, () => "blocked")""")
        assert read == "blocked", read
        app.evaluate(f"""() => fetch("{g.url}/logout", {{method: "POST", mode: "no-cors",
            credentials: "include", body: new URLSearchParams({{_xsrf: "x"}})}})
            .catch(() => null)""")
        app.evaluate('() => { document.cookie = "tossed=1; domain=localhost; path=/"; }')
        assert page.request.get(f"{g.url}/api/me").status == 200  # still signed in
        names = {c["name"] for c in context.cookies(g.url)}
        assert "tossed" not in names, names
    finally:
        context.close()

    # the app's host answers its app's ticket URLs only
    ticket_path = src.split(app_origin, 1)[1].split("?")[0]
    with httpx.Client(base_url=g.url.replace("localhost", "127.0.0.1", 1), timeout=60) as web:
        host = {"Host": f"{slug}.localhost:{port}"}
        assert web.get(ticket_path + "~status", headers=host).status_code == 200
        for path in ("/", "/login", "/api/me", f"/app/{slug}/open", f"/apps/{slug}/",
                     "/static/app_frame.js", ticket_path.replace(f"/apps/{slug}/", "/apps/x/")):
            r = web.get(path, headers=host)
            assert r.status_code == 404, (path, r.status_code)
        other = {"Host": f"other-app.localhost:{port}"}
        assert web.get(ticket_path + "~status", headers=other).status_code == 404
