"""What the app runtime needs from the gallery, as a type: approved releases of apps.

The supervisor never imports the catalog or the bundle store. It depends on :class:`AppSource`,
which the gallery implements (:class:`nbapps.server.app_source.CatalogAppSource`: the catalog
says which version of an app is live and approved, the bundle store gives its source, extracted
once per content hash). Tests give a plain function instead (:class:`FunctionSource`).
"""
from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from .process import AppRelease

Resolver = Callable[[str], "Awaitable[AppRelease | None] | AppRelease | None"]


@runtime_checkable
class AppSource(Protocol):
    """Where approved app versions come from."""

    async def resolve(self, slug: str) -> AppRelease | None:
        """The live approved version of ``slug`` with its source extracted in a local folder
        (never modified afterwards); None when there is no such app or no live version.
        May raise: the supervisor answers "unavailable" and retries later."""
        ...


class FunctionSource:
    """An :class:`AppSource` made of a ``resolve(slug)`` function (sync or async)."""

    def __init__(self, fn: Resolver) -> None:
        self.fn = fn

    async def resolve(self, slug: str) -> AppRelease | None:
        result = self.fn(slug)
        if inspect.isawaitable(result):
            result = await result
        return result  # type: ignore[return-value]


def as_source(source: AppSource | Resolver) -> AppSource:
    """``source`` as an :class:`AppSource` (functions are wrapped)."""
    if isinstance(source, AppSource):
        return source
    return FunctionSource(source)
