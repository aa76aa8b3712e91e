"""The gallery as the app runtime's source of approved releases (:class:`~nbapps.runner.source.
AppSource`): the catalog says which version of an app is live, the bundle store gives its source.

The runtime depends only on the Protocol; this is its implementation on the server side. The
lookup and the extraction (once per content hash, into ``<data_dir>/runtime/bundles/``) are
:func:`nbapps.runner.wiring.catalog_resolver`'s.
"""
from __future__ import annotations

from ..previews import is_preview_key
from ..runner.process import AppRelease
from ..runner.wiring import catalog_resolver, preview_resolver
from .context import ServerContext


class CatalogAppSource:
    """Live approved app versions from the gallery's catalog and bundle store; a preview key
    (``~v<id>``, :mod:`nbapps.previews`) resolves to that submitted version instead."""

    def __init__(self, ctx: ServerContext) -> None:
        self._resolve = catalog_resolver(ctx)
        self._preview = preview_resolver(ctx)

    async def resolve(self, slug: str) -> AppRelease | None:
        if is_preview_key(slug):
            return await self._preview(slug)
        return await self._resolve(slug)
