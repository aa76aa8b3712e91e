"""My account: who I am and my API tokens (for the CLI and the JupyterLab extension)."""
from __future__ import annotations

from typing import Any, ClassVar

from .authz import AUTHENTICATED, Requirement
from .base import PageHandler
from .views import NOTICES


class AccountHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": AUTHENTICATED}
    nav = "account"

    def get(self) -> None:
        show_account(self, **NOTICES.get(self.get_argument("done", ""), {}))


def show_account(handler: PageHandler, **values: Any) -> None:
    user = handler.require_user()
    tokens = handler.ctx.catalog.list_tokens(user.name)
    base = handler.gallery_url()
    handler.render_page("account.html", tokens=tokens, gallery_url=base, **values)


class TokenCreateHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": AUTHENTICATED}
    nav = "account"

    async def post(self) -> None:
        user = self.require_user()
        label = self.get_body_argument("label", "")[:200]
        token, info = await self.ctx.run(self.ctx.catalog.create_token, user.name,
                                         actor=user.name, label=label)
        show_account(self, new_token=token, new_token_info=info)


class TokenRevokeHandler(PageHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"POST": AUTHENTICATED}

    async def post(self, prefix: str) -> None:
        user = self.require_user()
        await self.ctx.run(self.ctx.catalog.revoke_token, user.name, prefix, actor=user.name)
        self.ctx.identity.invalidate()
        self.redirect(self.url("/account?done=token"))
