"""Apps on origins of their own (``c.NbappsServer.app_subdomain_host``), like JupyterHub's
``subdomain_host``.

By default an app page is sandboxed on the gallery's own origin (:mod:`.app_isolation`): its
document gets an opaque origin, which keeps app code away from the viewer's gallery session
but also gets no HTTP cache, so every open compiles Voilà's ~100 scripts again (~0.4 s of a
warm open). With an origin per app (``<slug>.<subdomain host>``) the page keeps the same
isolation from the gallery through the browser's same-origin policy instead:

- the gallery's cookies are host-only: an app host never receives them, and app code cannot
  read them;
- a request from an app origin to the gallery is same-site or cross-site, never same-origin:
  the gallery refuses such requests credentialed or state-changing use
  (:func:`.app_isolation.from_untrusted_context`, the Origin check of XSRF);
- each app has its own storage, and an app host answers only that app's ticket URLs
  (anything else there is a 404: no login form, no API, no other app);
- the page is still sandboxed (no top navigation, forms, plugins), only with
  ``allow-same-origin``, and may be framed only by the gallery's origin.

What repeated opens gain: a ticket is the same for one viewer's login session and app for up to
a quarter of its lifetime (:class:`.app_tickets.AppTickets` rounds its expiry), so within that
window the page's script URLs repeat and the browser reuses its cache and compiled code.

Settings:

- ``"auto"`` (default): when the viewer reached the gallery as ``localhost`` (a laptop, ``make
  demo``), apps are served from ``<slug>.localhost`` on the same port (browsers resolve every
  ``*.localhost`` name to the loopback address themselves, RFC 6761); any other host name, and
  a gallery under a base URL (behind JupyterHub or jupyter-server-proxy, which route by path
  and check host names themselves), keep the sandbox on the gallery's origin;
- ``""``: always the sandbox on the gallery's origin;
- a host name such as ``apps.example.org``: apps at ``<scheme>://<slug>.apps.example.org``
  (same scheme as the gallery's page), which needs wildcard DNS and a wildcard certificate
  pointing at the gallery, and ``public_url`` (the origin allowed to frame the apps). Use a
  registrable domain of its own (``example-apps.org``, as GitHub does with
  ``githubusercontent.com``): under the gallery's own domain app code could set cookies for it.

Previews of versions under review and slugs that cannot be a DNS label stay on the sandbox.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado import web
from tornado.httputil import HTTPServerRequest, split_host_and_port

from ..errors import UsageError

AUTO = "auto"
#: what may be the first label of an app's host name (a slug is lowercase, digits, hyphens)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?(?::\d{1,5})?")


@dataclass(frozen=True)
class AppOrigins:
    """Where apps are served from (see the module docstring)."""

    #: "", "auto", or the host name (and port) the apps' host names end with
    subdomain_host: str = AUTO
    #: the gallery's origin as its users reach it (``public_url``); needed with a host name
    gallery: str = ""

    @classmethod
    def from_settings(cls, subdomain_host: str, public_url: str, base_url: str = "/"
                      ) -> AppOrigins:
        """Checked settings (NBA390 when they cannot work). "auto" is off for a gallery under
        a base URL: behind a shared proxy (JupyterHub, jupyter-server-proxy) an app host may
        not reach it, or be refused by the proxy's own host check."""
        host = subdomain_host.strip().lower().rstrip(".")
        if host == AUTO and base_url.strip("/"):
            return cls("")
        if host in ("", AUTO):
            return cls(host)
        if not _HOST.fullmatch(host) or "://" in host:
            raise UsageError(f"app_subdomain_host {subdomain_host!r} is not a host name "
                             "(e.g. apps.example.org)", code="NBA390")
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError("app_subdomain_host needs public_url (the gallery's URL, the "
                             "origin allowed to frame the apps)", code="NBA390")
        return cls(host, f"{parts.scheme}://{parts.netloc}".lower())

    @property
    def enabled(self) -> bool:
        return self.subdomain_host != ""

    def _suffix(self) -> str | None:
        """The part of a host name after the app's label, if apps live below it."""
        if self.subdomain_host == AUTO:
            return "localhost"
        if self.subdomain_host:
            return split_host_and_port(self.subdomain_host)[0]
        return None

    def origin(self, request: HTTPServerRequest, slug: str) -> str | None:
        """The origin app ``slug`` is served from to a viewer on ``request``'s gallery page
        (None: the gallery's own, sandboxed)."""
        if not self.enabled or not _LABEL.fullmatch(slug):
            return None
        if self.subdomain_host == AUTO:
            name, port = split_host_and_port((request.host or "").lower())
            if name != "localhost":
                return None
            return f"{request.protocol}://{slug}.localhost" + (f":{port}" if port else "")
        return f"{request.protocol}://{slug}.{self.subdomain_host}"

    def slug_of(self, request: HTTPServerRequest) -> str | None:
        """The slug whose app host ``request`` was sent to (None: not an app host)."""
        if not self.enabled:
            return None
        name = split_host_and_port((request.host or "").lower())[0]
        suffix = self._suffix()
        if suffix is None or not name.endswith(f".{suffix}"):
            return None
        label = name[: -len(suffix) - 1]
        return label if _LABEL.fullmatch(label) else None

    def host_pattern(self) -> str | None:
        """The tornado host pattern (matched on the host name, no port) of the app hosts."""
        suffix = self._suffix()
        return rf"^[a-z0-9-]+\.{re.escape(suffix)}$" if suffix else None

    def framing_origin(self, request: HTTPServerRequest) -> str:
        """The gallery origin that may frame a page of an app host (``request`` is one)."""
        if self.subdomain_host == AUTO:
            port = split_host_and_port((request.host or "").lower())[1]
            return f"{request.protocol}://localhost" + (f":{port}" if port else "")
        return self.gallery


class NotOnAppHost(web.RequestHandler):
    """Everything an app host is asked for besides its app's ticket URLs: a bare 404 (no
    gallery page, form or API is ever served on an app's origin)."""

    def prepare(self) -> None:
        self.set_status(404)
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'")
        self.finish("Not found\n")


__all__ = ["AUTO", "AppOrigins", "NotOnAppHost"]
