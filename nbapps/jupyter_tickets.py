"""Jupyter server extension for a gallery behind jupyter-server-proxy (Binder): app pages work.

App pages are sandboxed (:mod:`nbapps.server.app_isolation`): in the viewer's browser they have
an opaque origin, so their requests carry no cookie, and their WebSocket says ``Origin: null``.
Behind jupyter-server-proxy every request to the gallery must first pass the Jupyter server's
own login, which knows only its cookie or its token: the app's scripts, styles and kernel
connection would all be refused (measured in Chromium: no cookie of any ``SameSite`` value is
sent from such a page). Handing the app Jupyter's token is out of the question (it runs code).

Instead this extension lets exactly the gallery's *app ticket* URLs through Jupyter's login and
origin check::

    <jupyter base_url><server name>/apps/<slug>/~t/<ticket>/...

and nothing else: only requests that jupyter-server-proxy handles, only with a ticket-shaped
path. The gallery itself checks every ticket (signature, app, viewer, expiry) and answers 403
otherwise, so a request that is let through here reaches one app, as the viewer the gallery
signed the ticket for, and never anything else of the Jupyter server. It wraps whatever
identity provider the server uses (a token, a password, JupyterHub's OAuth).

Enable it beside the proxy entry (``binder/jupyter_server_config.py``)::

    c.ServerApp.jpserver_extensions.update({"nbapps.jupyter_tickets": True})
"""
from __future__ import annotations

import logging
import re
from typing import Any

from .binder_proxy import NAME

log = logging.getLogger("nbapps.jupyter_tickets")

_SLUG = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_TICKET = r"[A-Za-z0-9_-]{8,400}\.[A-Za-z0-9_-]{16,64}"


def ticket_path(base_url: str, name: str = NAME) -> re.Pattern[str]:
    """The paths let through: app ticket URLs of the gallery proxied at ``<base_url><name>/``."""
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    return re.compile(rf"{re.escape(base)}{re.escape(name)}/apps/{_SLUG}/~t/{_TICKET}/")


class _AppTicketPass:
    """Mixed into the server's identity provider class at load time (whatever it is)."""

    _nbapps_ticket_path: re.Pattern[str]

    def _nbapps_app_request(self, handler: Any) -> bool:
        module = type(handler).__module__ or ""
        if not module.startswith("jupyter_server_proxy"):
            return False
        return self._nbapps_ticket_path.match(handler.request.path or "") is not None

    def get_user(self, handler: Any) -> Any:
        if self._nbapps_app_request(handler):
            from jupyter_server.auth import User

            return User(username="nbapps-app-page", name="an nbapps app page (ticket)")
        return super().get_user(handler)  # type: ignore[misc]

    def should_check_origin(self, handler: Any) -> bool:
        if self._nbapps_app_request(handler):
            return False  # a sandboxed page's origin is "null"; the ticket is its credential
        return bool(super().should_check_origin(handler))  # type: ignore[misc]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbapps.jupyter_tickets"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    provider = serverapp.identity_provider
    base = type(provider)
    if issubclass(base, _AppTicketPass):
        return

    class AppTicketIdentityProvider(_AppTicketPass, base):  # type: ignore[valid-type,misc]
        pass

    AppTicketIdentityProvider.__name__ = f"NbappsTickets{base.__name__}"
    provider.__class__ = AppTicketIdentityProvider
    provider._nbapps_ticket_path = ticket_path(serverapp.base_url)
    log.info("nbapps: app ticket URLs under %s%s/apps/ pass the Jupyter login",
             serverapp.base_url, NAME)
