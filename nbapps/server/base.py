"""Base handlers: identity, deny-by-default authorization, security headers, one error shape.

Every handler class declares ``permissions``: a mapping from HTTP method to the one requirement
(:mod:`nbapps.server.authz`) it needs. :meth:`BaseHandler.prepare` refuses any method that has no
entry, so a handler that forgets to declare is closed, not open; ``tests/test_server_authz.py``
also checks every route of the route table.

Errors: handlers raise :class:`~nbapps.errors.NbappsError`; :meth:`BaseHandler.write_error` turns
it (or a tornado ``HTTPError``) into the response: JSON ``{"error": code, "message": ...}`` for
the API, a rendered error page for pages. Tracebacks go to the debug log only.
"""
from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from markupsafe import Markup
from tornado import web

from ..errors import (
    AuthRequired,
    NbappsError,
    NotFound,
    PermissionDenied,
    TooLarge,
)
from .app_isolation import from_untrusted_context
from .authz import Requirement
from .identity import WebUser
from .routes import Param

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("nbapps.server")

#: Content-Security-Policy of every page: no inline script, nothing from other origins.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
#: deepest nesting of arrays/objects accepted in a JSON request body (NBA331 beyond)
MAX_JSON_DEPTH = 32


def coded_error(message: str, code: str, status: int) -> NbappsError:
    """An :class:`NbappsError` with an explicit HTTP status (for codes without a subclass)."""
    err = NbappsError(message, code=code)
    err.http_status = status
    return err


def http_error_to_nbapps(status: int, reason: str | None) -> NbappsError:
    """A tornado ``HTTPError`` (raised by tornado itself) as one of our coded errors."""
    msg = reason or "error"
    low = msg.lower()
    if status == 403 and "xsrf" in low:
        return coded_error(f"XSRF check failed: {msg}", "NBA330", 403)
    if status == 403 and ("origin" in low or "sec-fetch" in low):
        return coded_error(f"cross-origin request refused: {msg}", "NBA330", 403)
    if status == 403:
        return PermissionDenied(msg)
    if status == 404:
        return NotFound("no such page")
    if status == 405:
        return coded_error("method not allowed", "NBA332", 405)
    if status == 413:
        return TooLarge("request body too large")
    if 400 <= status < 500:
        return coded_error(f"bad request: {msg}", "NBA331", status)
    return coded_error("internal server error", "NBA333", status)


def retry_after(handler: web.RequestHandler, err: NbappsError) -> str:
    """Seconds for a ``Retry-After`` header of a rate-limit error (the login window default)."""
    if isinstance(err.details, dict) and "retry_after" in err.details:
        return str(int(err.details["retry_after"]))
    catalog = handler.settings["nbapps"].catalog
    return str(int(getattr(catalog, "login_window_s", 60)))


class BaseHandler(web.RequestHandler):
    """Shared by pages and API; subclasses set ``permissions`` (deny by default)."""

    permissions: ClassVar[Mapping[str, Requirement]] = {}
    #: "page" or "api": chooses the error format and the anonymous behaviour
    kind: ClassVar[str] = "page"
    #: query parameters with a type or a list of values, per method (API handlers declare them
    #: in ``docs``, which also feeds OpenAPI): a value that does not fit is NBA331
    query_params: ClassVar[Mapping[str, tuple[Param, ...]]] = {}

    route_name: str = ""

    def initialize(self, route_name: str = "", **kwargs: Any) -> None:
        self.route_name = route_name

    # -- context -------------------------------------------------------------------------------
    @property
    def ctx(self) -> ServerContext:
        return self.settings["nbapps"]  # type: ignore[no-any-return]

    @property
    def user(self) -> WebUser | None:
        return self.current_user  # type: ignore[no-any-return]

    def require_user(self) -> WebUser:
        user = self.current_user
        if user is None:  # prepare() already refused; this is for type checkers
            raise AuthRequired("log in first")
        return user  # type: ignore[no-any-return]

    # -- identity ------------------------------------------------------------------------------
    def _bearer(self) -> str | None:
        return self.ctx.identity.bearer_token(self.request.headers.get("Authorization"))

    def get_current_user(self) -> WebUser | None:
        token = self._bearer()
        if token is not None:  # a token header authenticates alone, never with the cookie too
            user = self.ctx.identity.user_from_token(token)
            if user is None:
                raise AuthRequired("API token invalid or revoked", code="NBA310")
            return user
        if from_untrusted_context(self.request):  # an app page or another site: no session
            return None
        return self.ctx.identity.user_from_cookie(self)

    def check_xsrf_cookie(self) -> None:
        # A request authenticated by a Bearer token carries no ambient credential (no cookie is
        # used for it), so a forged cross-site request cannot use it: no XSRF token needed.
        if self._bearer() is not None:
            return
        super().check_xsrf_cookie()

    def check_trusted_origin(self, origin: str) -> bool:
        # Same reasoning as check_xsrf_cookie: a bad token is refused outright (no cookie
        # fallback), so a cross-origin request may only act with its own valid token.
        if self._bearer() is not None:
            return True
        return origin in self.settings.get("trusted_origins", [])

    async def authenticate(self) -> WebUser | None:
        """The request's user: from the identity cache, else loaded on the thread pool (a token
        check may write its last-use time; it must not hold up the IOLoop)."""
        identity = self.ctx.identity
        token = self._bearer()
        # a sandboxed app page (Origin: null) or another site never acts with the session
        # cookie, even if a browser sent it (nbapps.server.app_isolation)
        untrusted = token is None and from_untrusted_context(self.request)
        session = None if token is not None or untrusted else identity.session(self)
        if token is None and session is None:
            return None
        found, user = identity.cached(token=token, session=session)
        if not found:
            if token is not None:
                user = await self.ctx.run(identity.user_from_token, token)
            else:
                user = await self.ctx.run(identity.user_from_cookie, self)
        if token is not None and user is None:
            raise AuthRequired("API token invalid or revoked", code="NBA310")
        return user

    # -- authorization (deny by default) ---------------------------------------------------------
    async def prepare(self) -> None:
        self._t0 = time.perf_counter()
        self.current_user = await self.authenticate()
        method = self.request.method or ""
        requirement = self.permissions.get(method)
        if requirement is None:
            fn = getattr(type(self), method.lower(), None)
            if fn is None or fn is getattr(web.RequestHandler, method.lower(), None):
                raise web.HTTPError(405)  # not implemented here
            log.warning("refused %s %s: handler %s declares no permission for this method",
                        method, self.request.path, type(self).__name__)
            raise PermissionDenied("this action is not allowed")
        user = self.current_user
        if not self.ctx.authorizer.is_allowed(user, requirement):
            if user is None:
                raise AuthRequired("log in to see this page")
            raise PermissionDenied(
                f"your role ({user.role}) does not allow this", code="NBA301"
            )
        self.check_query(method)

    def check_query(self, method: str) -> None:
        """Refuse (NBA331) a declared query parameter whose value is not of its type or not one
        of its values, so an unknown ``state=`` or a 30-digit ``before_id=`` is a clear 400,
        never an error further in."""
        op = getattr(self, "docs", {}).get(method)
        params = op.query if op is not None else self.query_params.get(method, ())
        args = self.request.query_arguments
        for param in params:
            for raw in args.get(param.name, ()):
                problem = param.problem(self.decode_argument(raw, name=param.name))
                if problem:
                    raise coded_error(f"bad query parameter: {problem}", "NBA331", 400)

    # -- headers ---------------------------------------------------------------------------------
    csp: ClassVar[str] = PAGE_CSP
    frame_options: ClassVar[str] = "DENY"

    def set_default_headers(self) -> None:
        h = self.set_header
        h("Content-Security-Policy", self.csp)
        h("X-Frame-Options", self.frame_options)
        h("X-Content-Type-Options", "nosniff")
        h("Referrer-Policy", "same-origin")
        h("Cross-Origin-Opener-Policy", "same-origin")
        h("Cross-Origin-Resource-Policy", "same-origin")
        h("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
        h("Cache-Control", "no-store")
        h("Server", "nbapps")

    # -- errors ----------------------------------------------------------------------------------
    def _error_of(self, status_code: int, exc: BaseException | None) -> NbappsError:
        if isinstance(exc, NbappsError):
            return exc
        if isinstance(exc, web.HTTPError):
            return http_error_to_nbapps(exc.status_code, exc.log_message or exc.reason)
        return http_error_to_nbapps(status_code, self._reason)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, NbappsError) and value.http_status < 500:
            log.debug("%s %s -> %s", self.request.method, self.request.path, value)
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            log.debug("%s %s -> %s", self.request.method, self.request.path, value)
            return
        log.error("error in %s %s: %s", self.request.method, self.request.path, value)
        log.debug("traceback:\n%s", "".join(traceback.format_exception(typ, value, tb)))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        err = self._error_of(status_code, exc)
        if err.http_status >= 500 and not isinstance(exc, NbappsError):
            err = coded_error("internal server error", "NBA333", 500)
        self.set_status(err.http_status)
        if err.http_status == 429 or err.code in ("NBA309", "NBA322", "NBA370"):
            self.set_header("Retry-After", retry_after(self, err))
        if isinstance(err, AuthRequired):
            self.set_header("WWW-Authenticate", 'Bearer realm="nbapps"')
        self.render_error(err)

    def render_error(self, err: NbappsError) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(err.to_dict()))

    # -- helpers -----------------------------------------------------------------------------------
    def client_ip(self) -> str:
        return self.request.remote_ip or "?"

    def url(self, path: str) -> str:
        """A root-relative gallery path under the configured base URL."""
        return self.ctx.options.url(path)

    def gallery_url(self) -> str:
        """The gallery's absolute URL, no trailing slash (``public_url``, or from the request's
        scheme and Host plus the base URL)."""
        public = self.ctx.options.public_url.rstrip("/")
        if public:
            return public
        return f"{self.request.protocol}://{self.request.host}" \
            f"{self.ctx.options.base_url.rstrip('/')}"

    def login_url_for(self, next_url: str) -> str:
        return self.ctx.options.login_url(next_url)

    def on_finish(self) -> None:
        metrics = self.ctx.metrics
        if metrics is not None:
            route = getattr(self, "route_name", type(self).__name__)
            metrics.observe(route, self.request.method or "", self.get_status(),
                            time.perf_counter() - getattr(self, "_t0", time.perf_counter()))


class PageHandler(BaseHandler):
    """HTML pages: errors as an error page; anonymous GETs go to the login page."""

    kind = "page"
    #: which navigation entry is highlighted
    nav: ClassVar[str] = ""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if (isinstance(exc, AuthRequired) and self.request.method in ("GET", "HEAD")
                and self._bearer() is None):
            self.clear()
            self.set_default_headers()
            self.redirect(self.login_url_for(self.request.uri or self.url("/")))
            return
        super().write_error(status_code, **kwargs)

    def render_error(self, err: NbappsError) -> None:
        headings = {401: "Please log in", 403: "Not allowed", 404: "Not found",
                    409: "Conflict", 413: "Too large", 429: "Too many attempts"}
        try:
            user = self.current_user if not isinstance(err, AuthRequired) else None
        except NbappsError:
            user = None
        html = self.render_string_page(
            "error.html",
            status=err.http_status,
            heading=headings.get(err.http_status, "Something went wrong"),
            message=err.message,
            hint=err.hint,
            code=err.code,
            _user=user,
        )
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(html)

    def namespace(self, user: WebUser | None) -> dict[str, Any]:
        authorizer = self.ctx.authorizer
        from ..accounts import Permission

        def can(name: str) -> bool:
            try:
                return authorizer.is_allowed(user, Permission(name))
            except ValueError:
                return False

        return {
            "user": user,
            "site_name": self.ctx.options.site_name,
            "static_url": self.static_url,
            "xsrf_form_html": lambda: Markup(self.xsrf_form_html()),
            "can": can,
            "nav": self.nav,
            "notice": None,
            "notice_kind": "",
            "extra_css": self.ctx.options.extra_css,
        }

    def render_string_page(self, template: str, _user: Any = ..., **values: Any) -> str:
        user = self.current_user if _user is ... else _user
        ns = self.namespace(user)
        ns.update(values)
        return self.ctx.templates.get_template(template).render(ns)

    def render_page(self, template: str, **values: Any) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.render_string_page(template, **values))


class APIHandler(BaseHandler):
    """JSON API: ``{"error": code, "message": ...}`` errors, JSON bodies."""

    kind = "api"
    csp = API_CSP

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object (empty body = ``{}``); NBA331 otherwise."""
        body = self.request.body
        if not body:
            return {}
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise coded_error(f"request body is not valid JSON: {exc}", "NBA331", 400) from None
        except RecursionError:  # nested deeper than the parser's stack
            data = _TOO_DEEP
        if data is _TOO_DEEP or _too_deep(data, MAX_JSON_DEPTH):
            raise coded_error(f"request body nested deeper than {MAX_JSON_DEPTH} levels",
                              "NBA331", 400)
        if not isinstance(data, dict):
            raise coded_error("request body must be a JSON object", "NBA331", 400)
        return data

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(data, default=str))


_TOO_DEEP = object()


def _too_deep(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists/objects more than ``limit`` deep (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value \
            if isinstance(value, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))
    return False
