"""A starting runner fills the gallery's memory of Voilà's shared scripts before its first page.

The shared assets (:mod:`.app_assets`) reach the gallery's memory through the proxy, the first
time a page asks for them. The first app page of a gallery process thus fetched its ~100 scripts
and styles from a runner that was, at that moment, still starting kernels: each wave of
requests took ~0.35 s instead of ~0.1 s, and the first cold start of a process was ~0.3 s
slower than the next ones (loan app, 2 cores).

So the gallery remembers which shared assets its pages asked for (a JSON list in its runtime
folder, kept across restarts: :class:`RememberedAssets`), and when a runner starts while some of
them are not in memory, it fetches them from that runner as soon as Voilà answers, in the
~0.5 s before the runner's first kernel has rendered (:func:`warm_from`). A brand-new data dir
has no list yet: its first page fills memory the usual way.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Protocol

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..files import atomic_write_text
from ..runner.fetch import fetch
from ..runner.process import RunnerState
from .app_assets import AssetCache
from .stream_rewrite import Scrubber, scrubbed

log = logging.getLogger("nbapps.server.apps")

#: the list's file name in the runtime folder
SHARED_ASSETS_FILE = "shared-assets.json"


class WarmableRunner(Protocol):
    """What a warm-up needs of a starting runner."""

    id: str
    token: str
    http_at: float
    state: RunnerState

    def url(self, path: str, query: str = "") -> str: ...

    @property
    def auth_headers(self) -> dict[str, str]: ...


class RememberedAssets:
    """The shared asset keys pages asked for, kept in a small file across gallery restarts."""

    def __init__(self, path: Path | None, limit: int = 1000) -> None:
        self.path = path
        self.limit = limit
        self._keys: dict[str, None] = dict.fromkeys(self._read())
        self._save_due = False

    def _read(self) -> list[str]:
        if self.path is None:
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        keys = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(keys, list):
            return []
        # only what the cache itself would key (a damaged or edited file fetches nothing else)
        return [k for k in keys if isinstance(k, str) and AssetCache.key(*_split(k)) == k
                ][:self.limit]

    def listed(self) -> list[str]:
        return list(self._keys)

    def note(self, key: str) -> None:
        """A page asked for ``key``: remember it (saved within a second)."""
        if key in self._keys or len(self._keys) >= self.limit:
            return
        self._keys[key] = None
        if self.path is None or self._save_due:
            return
        self._save_due = True
        try:
            asyncio.get_running_loop().call_later(1.0, self.save)
        except RuntimeError:  # no event loop (tests, tools): now
            self.save()

    def save(self) -> None:
        self._save_due = False
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"keys": list(self._keys)}), mode=0o600)
        except OSError as exc:  # a cache hint only: never a failure of the page
            log.warning("could not save the list of shared app assets: %s", exc)


def _split(key: str) -> tuple[str, str]:
    rel, _, query = key.partition("?")
    return rel, query


def missing(cache: AssetCache, remembered: RememberedAssets) -> list[str]:
    return [k for k in remembered.listed() if not cache.has(k)]


async def warm_from(runner: WarmableRunner, cache: AssetCache, remembered: RememberedAssets,
                    http: AsyncHTTPClient | None = None, *, concurrency: int = 8,
                    wait: float = 60.0) -> int:
    """Fetch the remembered shared assets missing from ``cache`` from ``runner`` once its Voilà
    answers; how many were stored. Gives up quietly (a cache, not a requirement)."""
    deadline = time.monotonic() + wait
    while not runner.http_at:  # not spawned yet, then Voilà still starting
        if runner.state in (RunnerState.FAILED, RunnerState.STOPPED) or \
                time.monotonic() > deadline:
            return 0
        await asyncio.sleep(0.05)
    http = http or AsyncHTTPClient()
    todo = missing(cache, remembered)
    stored = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(key: str) -> None:
        nonlocal stored
        rel, query = _split(key)
        async with gate:
            if cache.has(key):  # a page got it meanwhile
                return
            try:
                resp = await fetch(http, HTTPRequest(
                    runner.url(rel, query), headers=runner.auth_headers, connect_timeout=5,
                    request_timeout=30, decompress_response=True), raise_error=False)
            except (HTTPClientError, OSError, asyncio.TimeoutError):
                return
        if resp.code != 200 or resp.body is None:
            return
        body = resp.body
        if scrubbed(resp.headers.get("Content-Type", "")):
            scrub = Scrubber(runner.token)
            body = scrub.feed(body) + scrub.close()
        cache.put(key, list(resp.headers.get_all()), body)
        stored += 1

    await asyncio.gather(*(one(k) for k in todo))
    if todo:
        log.info("shared app assets: %d of %d fetched from starting runner %s", stored,
                 len(todo), runner.id)
    return stored


def warm_soon(runner: WarmableRunner, cache: AssetCache, remembered: RememberedAssets,
              http: AsyncHTTPClient | None = None) -> asyncio.Task[int] | None:
    """Start :func:`warm_from` for a runner whose start begins (None: nothing is missing)."""
    if not missing(cache, remembered):
        return None

    async def quietly() -> int:
        try:
            return await warm_from(runner, cache, remembered, http)
        except Exception:  # a cache: never a failure of the start
            log.exception("shared app assets: warm-up from runner %s failed", runner.id)
            return 0

    return asyncio.ensure_future(quietly())
