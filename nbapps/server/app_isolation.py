"""How app responses are isolated from the gallery in the viewer's browser (DESIGN.md, 8).

Approved app code is untrusted in the browser: markdown with raw HTML, ``<script>`` outputs,
``Javascript()`` and files such as SVG all run script. Every response under ``<base>apps/`` gets
a Content-Security-Policy with a ``sandbox`` directive *without* ``allow-same-origin``: the
document gets an opaque origin, so its script cannot read the gallery's cookies or storage
(``document.cookie`` and ``localStorage`` throw), cannot reach into the gallery page that frames
it, and every request it makes to the gallery's host is cross-site: the browser sends no cookie
with it, and the gallery refuses state-changing or credentialed use from such contexts anyway
(``Origin: null``, ``Sec-Fetch-Site: cross-site``; see :mod:`nbapps.server.base`). The app's own
requests are authorised by a ticket in their path instead (:mod:`nbapps.server.app_tickets`).

This works on one origin (the embedded default, a base URL behind JupyterHub or a reverse
proxy): no second host name is needed. What each header allows:

- app pages: scripts, popups (links to other sites, opened outside the sandbox), downloads and
  modal dialogs; scripts, styles, images, fonts and connections only from the gallery's host
  (``'self'`` is the URL's origin even for a sandboxed document: measured in Chromium), inline
  script and ``eval`` because Voilà's page and notebook outputs need them; no plugins, no form
  submission, framed only by the gallery's own pages;
- files of the app (``voila/files/``, e.g. an SVG opened directly): sandboxed without scripts;
- everything else (assets, kernel model): sandboxed, nothing may load.
"""
from __future__ import annotations

from tornado.httputil import HTTPServerRequest

#: sandbox flags of app pages (no allow-same-origin: an opaque origin; no allow-forms: apps and
#: widgets do not submit forms, and a form could only be a cross-site request to the gallery)
SANDBOX_FLAGS = ("allow-scripts allow-popups allow-popups-to-escape-sandbox allow-downloads "
                 "allow-modals")
#: the same flags for the ``sandbox`` attribute of the gallery's iframe (belt and braces: the
#: response's CSP applies too; the stricter of both wins)
IFRAME_SANDBOX = SANDBOX_FLAGS

APP_PAGE_CSP = (
    f"sandbox {SANDBOX_FLAGS}; default-src 'none'; "
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "media-src 'self' data: blob:; worker-src 'self' blob:; frame-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)
#: files of the app (images; an SVG opened by itself must not run its script)
APP_FILE_CSP = ("sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                "frame-ancestors 'self'")
#: scripts, styles, fonts, JSON: never a document that could run anything
APP_ASSET_CSP = "sandbox; default-src 'none'; frame-ancestors 'self'"
#: the proxy's own small pages (starting, busy, not found...): our inline style only
APP_NOTICE_CSP = (f"sandbox {SANDBOX_FLAGS}; default-src 'none'; style-src 'unsafe-inline'; "
                  "img-src data:; frame-ancestors 'self'")

#: response headers of every app response
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # the page URL holds the ticket: never send it to anyone in a Referer
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
#: extra headers of responses to ticket requests: the sandboxed (opaque-origin) page reads its
#: own responses cross-origin (fonts, JSON); no credentials are involved, the ticket is in the URL
TICKET_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, X-Requested-With",
    "Access-Control-Max-Age": "600",
}


def on_app_origin(csp: str, framing_origin: str) -> str:
    """``csp`` for a response of an app host (:mod:`.app_origins`): framed by the gallery's
    origin (not ``'self'``, the app's), and an app page keeps its real origin in its sandbox
    (``allow-same-origin``: that origin is the app's own, never the gallery's)."""
    page = csp == APP_PAGE_CSP
    csp = csp.replace("frame-ancestors 'self'", f"frame-ancestors {framing_origin}")
    if page:
        csp = csp.replace(f"sandbox {SANDBOX_FLAGS};",
                          f"sandbox {SANDBOX_FLAGS} allow-same-origin;", 1)
        # no service worker (an opaque origin cannot have one either): one registered by an
        # approved version would keep answering for the app's host after a rollback
        csp = csp.replace("worker-src 'self' blob:", "worker-src blob:", 1)
    return csp


def csp_for(rel: str, content_type: str = "") -> str:
    """The CSP of an app response for the runner path ``rel`` (relative to the app's base)."""
    if rel.startswith("voila/files/"):
        return APP_FILE_CSP
    if rel == "" and content_type.startswith("text/html"):
        return APP_PAGE_CSP
    return APP_ASSET_CSP


def navigation_destination(request: HTTPServerRequest) -> str | None:
    """For a browser navigation, what it loads into ("document", "iframe"...); else None.

    Browsers send Fetch Metadata to trustworthy origins (https, localhost); over plain http to
    another host they do not, and then a navigation is recognised by its ``Accept`` header
    (every browser asks for ``text/html`` first; scripts and benchmarks do not).
    """
    mode = request.headers.get("Sec-Fetch-Mode")
    if mode is not None:
        return request.headers.get("Sec-Fetch-Dest", "document") if mode == "navigate" else None
    accept = request.headers.get("Accept", "")
    return "document" if "text/html" in accept else None


def from_untrusted_context(request: HTTPServerRequest) -> bool:
    """Whether a request comes from a context that must not use the viewer's gallery session.

    True for an opaque origin (``Origin: null``: a sandboxed app page, a data: URL) and for
    cross-site or same-site requests that are not top-level navigations (Fetch Metadata). A
    top-level GET navigation from elsewhere (a link in an e-mail) keeps the session: it cannot
    read what it opens.
    """
    headers = request.headers
    if headers.get("Origin") == "null":
        return True
    site = headers.get("Sec-Fetch-Site")
    if site in (None, "same-origin", "none"):
        return False
    return not (headers.get("Sec-Fetch-Mode") == "navigate"
                and headers.get("Sec-Fetch-Dest", "document") == "document"
                and request.method in ("GET", "HEAD"))
