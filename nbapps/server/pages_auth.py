"""Login and logout pages.

A login opens a session in the catalog and puts its id in the signed session cookie; logout ends
that session in the catalog (so a copy of the cookie replayed later is nobody), then clears the
cookie.
"""
from __future__ import annotations

from typing import ClassVar
from urllib.parse import urlsplit

from ..errors import NbappsError
from .authz import AUTHENTICATED, PUBLIC, Requirement
from .base import PageHandler, retry_after
from .hub_auth import login_links
from .identity import SESSION_COOKIE


def safe_next(url: str | None, base_url: str = "/") -> str:
    """Only paths of this gallery (under ``base_url``) are allowed as the post-login destination:
    no open redirect, and no detour to another service behind the same proxy."""
    if not url:
        return base_url
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not url.startswith(base_url) or url.startswith("//") \
            or "\\" in url:
        return base_url
    return url


class LoginHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC, "POST": PUBLIC}
    nav = "login"

    def get(self) -> None:
        nxt = safe_next(self.get_argument("next", ""), self.ctx.options.base_url)
        if self.current_user is not None:
            self.redirect(nxt)
            return
        self.render_page("login.html", next=nxt, username="", error=None,
                         hub=login_links(self.ctx, nxt),
                         logged_out=self.get_argument("logged_out", "") == "1")

    async def post(self) -> None:
        name = self.get_body_argument("username", "").strip()
        password = self.get_body_argument("password", "")
        nxt = safe_next(self.get_body_argument("next", ""), self.ctx.options.base_url)
        try:
            user = await self.ctx.run(self.ctx.identity.login, name, password, self.client_ip())
        except NbappsError as err:
            if err.http_status >= 500:
                raise
            self.set_status(err.http_status)
            if err.code == "NBA309":
                self.set_header("Retry-After", retry_after(self, err))
            self.render_page("login.html", next=nxt, username=name, error=err.message,
                             _user=None, hub=login_links(self.ctx, nxt), code=err.code)
            return
        session_id = await self.ctx.run(self.ctx.identity.start_session, user)
        self.set_signed_cookie(
            SESSION_COOKIE, session_id,
            expires_days=self.ctx.identity.session_days, httponly=True, samesite="Lax",
            secure=self.request.protocol == "https", path=self.ctx.options.base_url,
        )
        self.redirect(nxt)


class LogoutHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": AUTHENTICATED}

    async def post(self) -> None:
        user = self.require_user()
        self.clear_cookie(SESSION_COOKIE, path=self.ctx.options.base_url)
        identity = self.ctx.identity
        session = identity.session(self)
        if session is not None:  # ends it in the catalog and audits the logout
            await self.ctx.run(identity.end_session, session, user, self.client_ip())
        else:  # a logout with a Bearer token: there is no session to end
            await self.ctx.run(self.ctx.catalog.audit, "logout", actor=user.name,
                               target=f"user:{user.name}", ip=self.client_ip())
        self.redirect(self.url("/login?logged_out=1"))
