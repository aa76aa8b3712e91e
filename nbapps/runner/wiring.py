"""Glue between the gallery (catalog + bundle store) and the supervisor.

    runtime = make_runtime(ctx)            # ctx: nbapps.server.context.ServerContext

The resolver maps an app slug to its live approved version: the bundle is extracted once per
content hash into ``<data_dir>/runtime/bundles/<sha256>`` (temp folder + rename, never
modified afterwards); runners copy it read-only into their own folder.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import NotFound
from .process import AppRelease
from .supervisor import Supervisor, SupervisorSettings


def _extract(store: Any, sha256: str, folder: Path) -> None:
    if (folder / "manifest.json").is_file():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    store.extract(sha256, tmp)
    try:
        os.replace(tmp, folder)
    except OSError:  # another process extracted it first
        shutil.rmtree(tmp, ignore_errors=True)


def catalog_resolver(ctx: Any) -> Callable[[str], Awaitable[AppRelease | None]]:
    """``resolve(slug)`` for :class:`Supervisor` from the gallery's catalog and bundle store."""
    bundles = Path(ctx.data_dir) / "runtime" / "bundles"

    async def resolve(slug: str) -> AppRelease | None:
        try:
            detail = await ctx.run(ctx.catalog.get_app, slug, live_only=True)
        except NotFound:
            return None
        if detail.live is None:
            return None
        sha = detail.live.sha256
        folder = bundles / sha
        await ctx.run(_extract, ctx.store, sha, folder)
        return AppRelease(slug, sha, folder)

    return resolve


def make_runtime(ctx: Any, settings: SupervisorSettings | None = None) -> Supervisor:
    """The gallery's app runtime: a supervisor over ``<data_dir>/runtime``."""
    settings = settings or SupervisorSettings(runtime_dir=Path(ctx.data_dir) / "runtime")
    return Supervisor(settings, catalog_resolver(ctx))
