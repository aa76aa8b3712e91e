"""Glue between the gallery (catalog + bundle store) and the supervisor.

    runtime = make_runtime(ctx)            # ctx: nbapps.server.context.ServerContext

The resolver maps an app slug to its live approved version: its stored **source** (``app.ipynb``
and the files it declares, nothing else of what the client uploaded; DESIGN.md decision 7) is
extracted once per source hash into ``<data_dir>/runtime/sources/<sha256>`` with a
``manifest.json`` the gallery writes (the notebook's name and the gallery-derived contract;
temp folder + rename, never modified afterwards); runners copy it read-only into their own
folder. So the bytes approved are the bytes that run.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..jobs.source import runner_manifest, source_ref
from .process import AppRelease
from .supervisor import Supervisor, SupervisorSettings


def _extract(store: Any, version: Any, root: Path) -> Path:
    """The folder holding ``version``'s source and gallery manifest (extracted if missing)."""
    sha, key = source_ref(version)
    folder = root / sha
    if (folder / "manifest.json").is_file():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    source = store.extract_source(sha, tmp, key)
    (tmp / "manifest.json").write_text(json.dumps(runner_manifest(version, source.sha256)),
                                       encoding="utf-8")
    try:
        os.replace(tmp, folder)
    except OSError:  # another process extracted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def catalog_resolver(ctx: Any) -> Callable[[str], Awaitable[AppRelease | None]]:
    """``resolve(slug)`` for :class:`Supervisor` from the gallery's catalog and bundle store."""
    sources = Path(ctx.data_dir) / "runtime" / "sources"

    async def resolve(slug: str) -> AppRelease | None:
        try:
            detail = await ctx.run(ctx.catalog.get_app, slug, live_only=True)
        except NotFound:
            return None
        if detail.live is None:
            return None
        folder = await ctx.run(_extract, ctx.store, detail.live, sources)
        return AppRelease(slug, detail.live.sha256, folder)

    return resolve


#: a preview's preheated kernels: one default-parameter page (a reviewer or two open it), no
#: custom-parameter pool (such pages start their kernel when asked)
PREVIEW_POOL_SIZES = (1, 0)


def preview_resolver(ctx: Any) -> Callable[[str], Awaitable[AppRelease | None]]:
    """``resolve(key)`` for a preview key ``~v<id>`` (:mod:`nbapps.previews`): that VERSION's
    stored source (not the live one), extracted like :func:`catalog_resolver`'s; None when the
    key is not a preview key, the version does not exist or may not run as a preview."""
    from ..previews import preview_version, previewable

    sources = Path(ctx.data_dir) / "runtime" / "sources"

    async def resolve(key: str) -> AppRelease | None:
        version_id = preview_version(key)
        if version_id is None:
            return None
        try:
            version = await ctx.run(ctx.catalog.get_version, version_id)
        except NotFound:
            return None
        if not previewable(version):
            return None
        folder = await ctx.run(_extract, ctx.store, version, sources)
        return AppRelease(key, version.sha256, folder,
                          title=f"Preview of {version.title} (version {version.number})",
                          pool_sizes=PREVIEW_POOL_SIZES)

    return resolve


def make_runtime(ctx: Any, settings: SupervisorSettings | None = None) -> Supervisor:
    """The gallery's app runtime: a supervisor over ``<data_dir>/runtime``."""
    settings = settings or SupervisorSettings(runtime_dir=Path(ctx.data_dir) / "runtime")
    return Supervisor(settings, catalog_resolver(ctx))
