"""Everything a handler needs, built once per server: catalog, store, identity, templates.

Handlers reach it as ``self.ctx`` (``settings["nbapps"]``). It holds no request state. Catalog
reads are short and run on the IOLoop thread; anything slow (unpacking and checking an upload,
rendering a notebook, diffing) or that may wait for a lock (catalog writes) runs on the thread
pool through :meth:`ServerContext.run`.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2

from ..catalog import Catalog
from ..store import BundleStore
from .authz import Authorizer
from .identity import IdentityProvider

T = TypeVar("T")

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True)
class ServerOptions:
    """The configuration values handlers read (copied from :class:`~.app.NbappsServer`)."""

    site_name: str = "nbapps gallery"
    max_upload_bytes: int = 50 * 1024 * 1024
    max_unpacked_bytes: int = 200 * 1024 * 1024
    per_page: int = 24
    allow_anonymous_apps: bool = False
    gallery_cache_ttl: float = 2.0
    public_url: str = ""
    extra_css: tuple[str, ...] = ()
    #: URL path the gallery is served under, with both slashes ("/" or "/team/gallery/")
    base_url: str = "/"

    def url(self, path: str) -> str:
        """``/app/x`` → ``<base_url>app/x``: every root-relative link and redirect goes here."""
        return self.base_url + path.lstrip("/")

    def login_url(self, next_url: str) -> str:
        """The login page, coming back to ``next_url`` (a path of this gallery) afterwards."""
        return self.url("/login?next=" + quote(next_url, safe="/"))


class ResultCache:
    """Small TTL cache for catalog reads that many requests share (gallery pages, search).

    Entries live ``ttl`` seconds and the whole cache is dropped by :meth:`bump` whenever this
    server changes the catalog, so a user sees their own change at once; another replica's
    change shows when this one hears of it (PostgreSQL's notifications, the live-version
    check: :mod:`.live_sync`), and within ``ttl`` at the latest.
    """

    def __init__(self, ttl: float, maxsize: int = 512) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._data: dict[Hashable, tuple[float, int, Any]] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        if self.ttl <= 0:
            return load()
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
            generation = self._generation
        if hit is not None and hit[0] > now and hit[1] == generation:
            return hit[2]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            if generation == self._generation:
                if len(self._data) >= self.maxsize:
                    self._data.clear()
                self._data[key] = (now + self.ttl, generation, value)
        return value

    def bump(self) -> None:
        with self._lock:
            self._generation += 1
            self._data.clear()


@dataclass
class ServerContext:
    options: ServerOptions
    catalog: Catalog
    store: BundleStore
    identity: IdentityProvider
    authorizer: Authorizer
    templates: jinja2.Environment
    data_dir: Path
    executor: ThreadPoolExecutor
    #: the app runtime (runners + proxy) wired in by the runner module; None = not available
    runtime: Any = None
    #: the gallery's check workers (:class:`nbapps.jobs.pool.CheckPool`); None: none here
    checks: Any = None
    #: the gallery's run workers (:class:`nbapps.runs.pool.RunPool`); None: runs not served
    runs: Any = None
    #: the gallery's scheduler (:class:`nbapps.schedules.scheduler.Scheduler`); None: none
    scheduler: Any = None
    metrics: Any = None
    cache: ResultCache = field(default_factory=lambda: ResultCache(2.0))
    #: switches of the runtime to a new live version still running, by slug (switch_live)
    refreshing: dict[str, asyncio.Future[Any]] = field(default_factory=dict)
    #: called after each live decision made here (:class:`.live_sync.LiveSync` checks at once)
    on_live_decision: Callable[[], None] | None = None
    #: tells the other replicas to drop their cached listings (:mod:`.live_notify`)
    announce_change: Callable[[], None] | None = None

    @property
    def upload_dir(self) -> Path:
        """Where uploads are spooled and unpacked (emptied at every start)."""
        return self.data_dir / "tmp" / "uploads"

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the thread pool and await its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def changed(self) -> None:
        """Call after a catalog write made here: drops cached listings, here and (on
        PostgreSQL) on the other replicas."""
        self.cache.bump()
        if self.announce_change is not None:
            self.announce_change()

    def live_changed(self, slug: str) -> None:
        """Call after an approval or rollback made here (committed; the catalog told the other
        replicas): this replica's check of live versions runs at once (what it compares
        with then includes this decision, so the next change made elsewhere is seen as one)
        and the runtime switches ``slug`` (:meth:`switch_live`)."""
        if self.on_live_decision is not None:
            self.on_live_decision()
        self.switch_live(slug)

    def switch_live(self, slug: str) -> None:
        """Switch the runtime's ``slug`` to its live version in the background (start new,
        route new requests to it, drain the old)."""
        refresh = getattr(self.runtime, "refresh", None)
        if refresh is None:
            return
        task = asyncio.ensure_future(refresh(slug))
        self.refreshing[slug] = task
        task.add_done_callback(_log_refresh_failure)
        task.add_done_callback(
            lambda t: self.refreshing.pop(slug) if self.refreshing.get(slug) is t else None)

    def refreshing_now(self, slug: str) -> bool:
        """Whether a switch of ``slug`` started by :meth:`switch_live` is still running."""
        task = self.refreshing.get(slug)
        return task is not None and not task.done()


def _log_refresh_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logging.getLogger("nbapps.server").warning(
            "switching app version failed: %s", task.exception())


def make_template_env(
    template_paths: list[str], *, auto_reload: bool = False, base_url: str = "/"
) -> jinja2.Environment:
    """Jinja2 environment: operator folders first (override any template), then ours.

    Autoescape is on for every template (HTML is the only thing rendered here). Every template
    sees ``base_url`` (write links as ``{{ base_url }}app/x``, never ``/app/x``).
    """
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(p) for p in template_paths]
    loaders.append(jinja2.FileSystemLoader(str(TEMPLATES_DIR)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        auto_reload=auto_reload,
        trim_blocks=True,
        lstrip_blocks=True,
        cache_size=400,
    )
    env.globals["base_url"] = base_url
    return env
