"""The two handlers tornado falls back on: static files and unknown URLs."""
from __future__ import annotations

import os

from tornado import web

from ..errors import NbappsError, NotFound
from .authz import PUBLIC
from .base import BaseHandler, PageHandler


class StaticHandler(web.StaticFileHandler):
    """Static files: public, long-cached (URLs carry a version hash), operator folders first."""

    def initialize(self, path: str, default_filename: str | None = None,
                   extra_paths: list[str] | None = None) -> None:
        super().initialize(path, default_filename)
        self.extra_paths = extra_paths or []

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        self.set_header("Referrer-Policy", "same-origin")

    def parse_url_path(self, url_path: str) -> str:
        for folder in self.extra_paths:
            candidate = os.path.join(folder, url_path)
            if os.path.isfile(candidate):
                self.root = folder
                break
        return super().parse_url_path(url_path)


class NotFoundHandler(PageHandler):
    """Unknown URLs: 404 in our error shape (JSON under /api/, a page elsewhere)."""

    permissions = {m: PUBLIC
                   for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}

    async def prepare(self) -> None:
        await super().prepare()
        raise NotFound("no such page")

    def render_error(self, err: NbappsError) -> None:
        if self.request.path.startswith(self.ctx.options.url("/api/")):
            BaseHandler.render_error(self, err)
        else:
            super().render_error(err)
