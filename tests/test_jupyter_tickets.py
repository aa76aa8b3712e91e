"""The Jupyter server extension that lets app ticket URLs through Jupyter's login (Binder).

The whole path (Chromium, jupyter-server-proxy, the gallery, a sandboxed app) is driven by
``tests/test_binder.py::test_demo_app_and_lab_panel_in_chromium``; here, without a build: what
is let through and what is not.
"""
from __future__ import annotations

from types import SimpleNamespace

from jupyter_server.auth import IdentityProvider

from nbapps.jupyter_tickets import _load_jupyter_server_extension, ticket_path
from nbapps.server.app_tickets import AppTickets

BASE = "/user/binder-sim/"
TICKET = AppTickets().issue("loan-calculator", "viewer", 3)


def _handler(path: str, module: str = "jupyter_server_proxy.handlers") -> object:
    cls = type("ProxyHandlerLike", (), {"__module__": module})
    handler = cls()
    handler.request = SimpleNamespace(path=path)  # type: ignore[attr-defined]
    return handler


def test_only_app_ticket_paths_of_the_gallery_match():
    pattern = ticket_path(BASE)
    app = f"{BASE}nbapps-gallery/apps/loan-calculator/~t/{TICKET}/"
    for ok in (app, f"{app}voila/static/voila.js", f"{app}api/kernels/x/channels"):
        assert pattern.match(ok), ok
    for no in (f"{BASE}nbapps-gallery/apps/loan-calculator/voila/static/voila.js",
               f"{BASE}nbapps-gallery/api/me", f"{BASE}api/contents",
               f"{BASE}nbapps-gallery/apps/loan-calculator/~t/short/",
               f"/user/other/nbapps-gallery/apps/loan-calculator/~t/{TICKET}/",
               f"{BASE}other-server/apps/loan-calculator/~t/{TICKET}/"):
        assert not pattern.match(no), no


def test_the_server_identity_provider_lets_them_through_and_nothing_else():
    provider = IdentityProvider()
    app = SimpleNamespace(identity_provider=provider, base_url=BASE)
    _load_jupyter_server_extension(app)
    _load_jupyter_server_extension(app)  # loading twice changes nothing
    assert isinstance(provider, IdentityProvider)
    path = f"{BASE}nbapps-gallery/apps/loan-calculator/~t/{TICKET}/voila/static/voila.js"
    user = provider.get_user(_handler(path))
    assert user is not None and user.username == "nbapps-app-page"
    assert provider.should_check_origin(_handler(path)) is False
    # the same path, handled by anything but jupyter-server-proxy, gets nothing special
    assert not provider._nbapps_app_request(_handler(path, "jupyter_server.services"))
    assert not provider._nbapps_app_request(_handler(f"{BASE}api/contents"))
