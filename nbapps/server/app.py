"""``NbappsServer``: the gallery's traitlets application (configuration, start, clean stop).

Configuration, lowest to highest priority: defaults, ``jupyter_nbapps_config.py`` (or ``.json``)
found on the Jupyter config path (``jupyter --paths``), then in the current folder, then
``--config FILE``, then command-line flags (``--port``, ``--ip``, ``--data-dir``, ``--db-url``,
``--allow-anonymous-apps`` or any ``--NbappsServer.<trait>=value``). Example::

    c.NbappsServer.port = 8866
    c.NbappsServer.db_url = "postgresql+psycopg://nbapps@db/nbapps"
    c.NbappsServer.template_paths = ["/etc/nbapps/templates"]   # your base.html wins

The server is a plain tornado application exposing only the routes of
:mod:`nbapps.server.routes`. SIGTERM and SIGINT stop it cleanly: it stops accepting, lets running
requests finish (up to ``shutdown_timeout``), stops the app runtime, then closes the catalog.
"""
from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tornado import netutil, web
from traitlets import Bool, Dict, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Application

from .. import __version__
from ..catalog import open_catalog
from ..datadir import (
    DataDirLock,
    ensure_private_dir,
    lock_data_dir,
    resolve_db_url,
    secure_data_dir,
)
from ..datadir_lookup import locate_data_dir
from ..errors import NbappsError
from ..runner.settings import RuntimeConfiguration
from ..store import open_store
from .api_meta import Metrics, openapi_json
from .app_origins import AppOrigins, NotOnAppHost
from .app_tickets import AppTickets
from .app_tickets import redact as redact_ticket
from .authz import Authorizer
from .context import STATIC_DIR, ResultCache, ServerContext, ServerOptions, make_template_env
from .fallback import NotFoundHandler, StaticHandler
from .forwarded import make_http_server
from .hub_auth import HubUsers, hub_users
from .hub_config import HubConfiguration
from .identity import CatalogUsers, IdentityProvider, resolve_cookie_secret
from .live_sync import LiveSync
from .logs import configure_logging
from .peers import Peers, checked_url, listen_url
from .periodic import Periodic
from .request_id import RequestIdTransform, request_id
from .routes import normalize_base_url, route_table, tornado_rules
from .uploads import clean_upload_dir

log = logging.getLogger("nbapps.server")
access_log = logging.getLogger("nbapps.access")

CONFIG_FILE_NAME = "jupyter_nbapps_config"


class NbappsServer(Application):
    name = "nbapps-serve"
    description = "Serve the nbapps gallery: catalog, review workflow, pages and JSON API."
    #: configurables of the server's parts (listed by --help-all, settable on the command line)
    classes = [RuntimeConfiguration, HubConfiguration]
    version = __version__

    aliases = {
        "port": "NbappsServer.port",
        "ip": "NbappsServer.ip",
        "data-dir": "NbappsServer.data_dir",
        "db-url": "NbappsServer.db_url",
        "store-url": "NbappsServer.store_url",
        "config": "NbappsServer.config_file",
        "log-level": "Application.log_level",
        "log-format": "NbappsServer.log_style",
        "public-url": "NbappsServer.public_url",
        "base-url": "NbappsServer.base_url",
    }
    flags = {
        "allow-anonymous-apps": ({"NbappsServer": {"allow_anonymous_apps": True}},
                                 "Let visitors without an account open live apps."),
        "debug": ({"Application": {"log_level": logging.DEBUG},
                   "NbappsServer": {"debug": True}}, "Debug logs and template reloading."),
    }

    # -- network ---------------------------------------------------------------------------------
    port = Integer(8866, config=True, help="Port to listen on (0: any free port).")
    ip = Unicode("127.0.0.1", config=True, help="Address to listen on.")
    public_url = Unicode("", config=True,
                         help="URL users reach the gallery at (for links the API returns); "
                              "default: from the request's Host.")
    base_url = Unicode("/", config=True,
                       help="URL path the gallery is served under when a proxy puts it below "
                            "a prefix (e.g. /team/gallery/): pages, API, static files, cookies "
                            "and apps (<base_url>apps/<slug>/) all live under it.")
    xheaders = Bool(False, config=True,
                    help="Behind a reverse proxy: take the client address from X-Forwarded-For "
                         "(see trusted_proxy_hops) and the scheme from X-Forwarded-Proto.")
    trusted_proxy_hops = Integer(1, config=True,
                                 help="With xheaders: how many reverse proxies in front append "
                                      "to X-Forwarded-For. The client address is the entry the "
                                      "outermost of them appended (1: the last entry); what a "
                                      "client writes before it, and X-Real-Ip, are ignored.")
    trusted_origins = List(Unicode(), config=True,
                           help="Other origins allowed to send state-changing requests.")
    shutdown_timeout = Float(10.0, config=True,
                             help="Seconds running requests get to finish at shutdown.")

    # -- data ------------------------------------------------------------------------------------
    data_dir = Unicode("", config=True,
                       help="Data folder (catalog, bundle store, cookie secret); default: "
                            "$NBAPPS_DATA_DIR or the user data dir.")
    db_url = Unicode("", config=True,
                     help="Catalog database URL (SQLite default in the data dir; or "
                          "postgresql+psycopg://...); also $NBAPPS_DB_URL.")
    store_url = Unicode("", config=True,
                        help="fsspec URL of the bundle store, e.g. s3://bucket/prefix with "
                             "nbapps[s3] (default: $NBAPPS_STORE_URL, else "
                             "<data-dir>/bundles).")
    store_options = Dict(default_value=None, allow_none=True, config=True,
                         help="fsspec storage options of the bundle store (s3fs: endpoint_url, "
                              "key, secret, anon, client_kwargs={'region_name': ...}); "
                              "default: $NBAPPS_STORE_OPTIONS (a JSON object), else none.")
    config_file = Unicode("", config=True, help="Extra config file loaded last.")
    cookie_secret = Unicode("", config=True,
                            help="Secret signing cookies and app tickets, as hex (32+ bytes: "
                                 "`openssl rand -hex 32`); the same on every replica. Also "
                                 "$NBAPPS_COOKIE_SECRET; default: cookie_secret_file, else "
                                 "the data dir's own cookie_secret file.")
    cookie_secret_file = Unicode("", config=True,
                                 help="File holding the cookie secret as hex (mode 0600), "
                                      "shared by replicas; used when cookie_secret and "
                                      "$NBAPPS_COOKIE_SECRET are not set.")
    live_poll_interval = Float(2.0, config=True,
                               help="Seconds between checks of the catalog for live versions "
                                    "changed by another replica (apps switch, listings "
                                    "refresh); 0: never (one gallery process).")
    internal_url = Unicode("", config=True,
                           help="Where the other gallery replicas reach this one, as "
                                "http://host:port (no path), e.g. http://$(POD_IP):8866 in "
                                "Kubernetes. A replica asked for an app kernel another one "
                                "owns forwards the request there (the load balancer's hash "
                                "moves when replicas come and go). Default: the address it "
                                "listens on; with 0.0.0.0 or ::, the host name's address.")
    live_notify = Bool(True, config=True,
                       help="On a PostgreSQL catalog, replicas hear of approvals, "
                            "rollbacks and other listing changes made on another at once "
                            "(LISTEN/NOTIFY on one connection each); the poll of "
                            "live_poll_interval stays as the safety net.")

    # -- policy ----------------------------------------------------------------------------------
    auth = Unicode("builtin", config=True,
                   help="Who logs people in: builtin (gallery accounts and passwords) or "
                        "jupyterhub (Hub OAuth as a Hub service; c.HubConfiguration.*). "
                        "Gallery API tokens work in both.")
    allow_anonymous_apps = Bool(False, config=True,
                                help="Visitors without an account may open live apps (they "
                                     "still need an account for everything else).")
    max_upload_bytes = Integer(50 * 1024 * 1024, config=True,
                               help="Largest bundle archive accepted (bytes).")
    max_request_bytes = Integer(1024 * 1024, config=True,
                                help="Largest body of any other request (forms, JSON).")
    max_unpacked_bytes = Integer(200 * 1024 * 1024, config=True,
                                 help="Largest total size of an unpacked bundle (bytes).")
    session_days = Float(7.0, config=True, help="Login sessions last this many days.")
    login_max_failures = Integer(5, config=True,
                                 help="Failed logins per user name and address before NBA309.")
    login_window_seconds = Integer(900, config=True,
                                   help="Window of the failed-login limit (seconds).")

    # -- pages -----------------------------------------------------------------------------------
    site_name = Unicode("nbapps gallery", config=True, help="Name shown in the page header.")
    template_paths = List(Unicode(), config=True,
                          help="Folders searched for templates before the built-in ones (put "
                               "a base.html there to restyle every page).")
    static_paths = List(Unicode(), config=True,
                        help="Folders searched for /static/ files before the built-in ones.")
    extra_css = List(Unicode(), config=True,
                     help="Extra stylesheets (paths under /static/) added to every page.")
    per_page = Integer(24, config=True, help="Apps per gallery page.")
    cache_seconds = Float(5.0, config=True,
                          help="How long gallery listings are cached (changes made through "
                               "this server show at once; other replicas' within this time).")

    # -- operations ------------------------------------------------------------------------------
    log_style = Unicode("text", config=True,
                        help="Log format: text (key=value) or json (one object per line, UTC "
                             "times); every request line carries its request_id.")
    readiness_timeout = Float(2.0, config=True,
                              help="Seconds each /readyz check (catalog, store) may take "
                                   "before the replica reports itself not ready.")
    access_log = Bool(True, config=True, help="Log one line per request.")
    worker_threads = Integer(4, config=True,
                             help="Threads for slow work (uploads, rendering, catalog writes).")
    debug = Bool(False, config=True, help="Debug mode (template reloading, verbose errors).")
    tornado_settings = Dict(config=True, help="Extra tornado Application settings.")
    serve_apps = Bool(True, config=True,
                      help="Serve live apps under /apps/<slug>/ with standalone Voila runners "
                           "(False: /apps/ answers 'runtime not available').")
    # deprecated aliases of RuntimeConfiguration traits (DEPRECATED_RUNTIME_ALIASES), one release
    app_pool_size = Integer(2, config=True,
                            help="Deprecated: use RuntimeConfiguration.pool_size.")
    app_custom_pool_size = Integer(1, config=True,
                                   help="Deprecated: use RuntimeConfiguration.custom_pool_size.")
    app_sandbox = Bool(True, config=True, help="Deprecated: use RuntimeConfiguration.sandbox.")
    app_cell_timeout = Float(60.0, config=True,
                             help="Deprecated: use RuntimeConfiguration.cell_timeout.")
    app_ticket_lifetime = Float(7200.0, config=True,
                                help="Seconds an open app page's ticket stays valid: its "
                                     "credential for its own assets, kernel and widgets (apps "
                                     "run sandboxed, without the viewer's session; README, "
                                     "'App isolation').")
    app_subdomain_host = Unicode(
        "auto", config=True,
        help="Apps on origins of their own, <slug>.<this host> (cached and faster than the "
             "sandbox on the gallery's origin): 'auto' = <slug>.localhost when the gallery is "
             "opened as localhost, else the sandbox; '' = always the sandbox; a host name "
             "(e.g. apps.example-apps.org, with wildcard DNS and certificate; needs "
             "public_url). README, 'App isolation'.")

    # -- the gallery's own check of submissions (DESIGN.md decision 7) -----------------------------
    check_workers = Integer(config=True,
                            help="Checks run at once (each a confined subprocess running the "
                                 "submitted notebook); default: one per core. 0: this gallery "
                                 "runs none (another replica sharing the catalog does).")
    check_queue_max = Integer(100, config=True,
                              help="Checks that may wait in the queue; more submissions are "
                                   "refused with NBA322 (HTTP 429) until it drains.")
    check_cell_timeout = Float(300.0, config=True,
                               help="Most seconds one cell may run in a check (a notebook's own "
                                    "metadata.nbapps.timeout applies when lower).")
    check_total_timeout = Float(900.0, config=True,
                                help="Most seconds one check may take, all its runs (default "
                                     "and test parameters) together; then its processes are "
                                     "killed and it fails with NBA323.")
    check_unchecked_versions = Bool(True, config=True,
                                    help="At start, queue a check for every version recorded "
                                         "without one (stored by an earlier nbapps).")

    # -- runs of approved versions (issue 14; nbapps.runs) --------------------------------------
    run_workers = Integer(config=True,
                          help="Runs executed at once (each a confined subprocess, like a "
                               "check; default: the CPU count, so a batch uses every core). "
                               "0: this gallery runs none.")
    run_queue_max = Integer(100, config=True,
                            help="Runs that may wait in the queue; more are refused with "
                                 "NBA370 (HTTP 429) until it drains.")
    run_user_max = Integer(50, config=True,
                           help="Runs one person may have queued or running at once (a batch "
                                "counts one per set); more are refused with NBA383 (HTTP 429).")
    run_timeout = Float(600.0, config=True,
                        help="Most seconds one run may take; then its kernel is killed "
                             "(NBA072) and, past a grace, its whole process tree (NBA372).")
    run_keep_days = Float(30.0, allow_none=True, config=True,
                          help="Finished runs older than this are deleted (None: kept).")
    run_keep_count = Integer(100, allow_none=True, config=True,
                             help="Finished runs kept per app, newest first (None: all).")
    run_fork = Bool(True, config=True,
                    help="Fork each run program from a warm process that has done its imports "
                         "(about 0.3 s of CPU saved per run); set up and confined as a spawned "
                         "program would be. False: every run program is a new Python.")
    run_pdf = Bool(True, config=True,
                   help="Offer each run's report as report.pdf, printed with Chromium at "
                        "its first download (when Playwright and Chromium are installed); "
                        "False: no PDF.")

    # -- schedules of live versions (issue 14; nbapps.schedules) ---------------------------------
    schedules_enabled = Bool(True, config=True,
                             help="Fire the schedules apps declare (metadata.nbapps.schedules). "
                                  "Replicas sharing a catalog fire each firing once.")
    schedule_tick = Float(30.0, config=True,
                          help="Seconds between two looks at due schedules and finished "
                               "scheduled runs.")
    schedule_allow_seconds = Bool(False, config=True,
                                  help="Also run 6-field cron schedules (a leading seconds "
                                       "field: they may fire every second; meant for tests).")
    schedule_retry_base = Float(60.0, config=True,
                                help="Seconds before the first retry of a failed scheduled run; "
                                     "doubled at each further failure.")
    schedule_retry_max = Float(3600.0, config=True,
                               help="Longest wait before a retry of a failed scheduled run.")
    schedule_retries = Integer(3, config=True,
                               help="Retries after a failed scheduled run (the next regular "
                                    "firing runs anyway).")
    schedule_webhook_url = Unicode("", config=True,
                                   help="POST a JSON notification here when a scheduled run "
                                        "fails or an app recovers (empty: none).")
    schedule_webhook_timeout = Float(5.0, config=True,
                                     help="Seconds the webhook may take to answer.")
    schedule_webhook_secret = Unicode("", config=True,
                                      help="Key of the webhook's X-Nbapps-Signature-256 header "
                                           "(HMAC-SHA256 of the body; empty: unsigned).")
    schedule_webhook_attempts = Integer(4, config=True,
                                        help="POSTs of one webhook notification before it is "
                                             "given up (retries after 5, 15, 45 s).")

    #: the app runtime (runners + proxy): set by the runner module before start; see
    #: :meth:`make_runtime`. None: /apps/<slug>/ answers "runtime not available".
    runtime: Any = None
    #: the app proxy's usage recorder (app views batched into the catalog), when apps are served
    usage: Any = None
    #: this replica in the registry of replicas, and the others (:mod:`.peers`)
    peers: Peers | None = None
    #: follows live-version changes made by other replicas (:mod:`.live_sync`)
    live_sync: LiveSync | None = None

    @default("log_level")
    def _log_level_default(self) -> int:
        return logging.INFO

    @default("check_workers")
    def _check_workers_default(self) -> int:
        return os.cpu_count() or 1

    @default("run_workers")
    def _run_workers_default(self) -> int:
        return os.cpu_count() or 1

    @validate("auth")
    def _valid_auth(self, proposal: Any) -> str:
        if proposal["value"] not in ("builtin", "jupyterhub"):
            raise TraitError("NBA342: auth must be builtin or jupyterhub, "
                             f"not {proposal['value']!r}")
        return str(proposal["value"])

    @validate("base_url")
    def _valid_base_url(self, proposal: Any) -> str:
        try:
            return normalize_base_url(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"NBA100: base_url: {exc}") from None

    @validate("internal_url")
    def _valid_internal_url(self, proposal: Any) -> str:
        try:
            return checked_url(proposal["value"])
        except ValueError as exc:
            raise TraitError(f"NBA391: internal_url: {exc}") from None

    # -- lifecycle -------------------------------------------------------------------------------

    def initialize(self, argv: list[str] | None = None) -> None:
        self.parse_command_line(argv)
        cl_config = self.config
        self._cli_data_dir = (cl_config.get("NbappsServer") or {}).get("data_dir") or None
        self.load_config_file(CONFIG_FILE_NAME, path=self.config_file_paths())
        if self.config_file:
            folder, name = os.path.split(os.path.abspath(self.config_file))
            self.load_config_file(name, path=[folder])
        self.update_config(cl_config)  # the command line wins over files
        self.init_logging()

    def config_file_paths(self) -> list[str]:
        """Current folder first (highest priority), then the Jupyter config path."""
        try:
            from jupyter_core.paths import jupyter_config_path

            paths = jupyter_config_path()
        except ImportError:  # pragma: no cover - jupyter_core comes with nbformat
            paths = []
        return [os.getcwd(), *paths]

    def init_logging(self) -> None:
        """Configure the ``nbapps`` loggers (the CLI owns logging; the library never does)."""
        configure_logging(self.log_style, self.log_level)

    _cli_data_dir: str | None = None

    def resolved_data_dir(self) -> Path:
        """``--data-dir`` (or a value set in code), else ``$NBAPPS_DATA_DIR``, else the config
        files' ``data_dir``, else the default: the order of every command
        (:mod:`nbapps.datadir_lookup`)."""
        merged = (self.config.get("NbappsServer") or {}).get("data_dir") or ""
        if self.data_dir and (self.data_dir != merged or self._cli_data_dir):
            return locate_data_dir(self.data_dir).path
        return locate_data_dir(None, config=(merged, "config") if merged else None).path

    def make_runtime(self, ctx: ServerContext) -> Any:
        """Hook for the app runtime; returns ``self.runtime`` (None by default).

        With a runtime, ``/apps/<slug>/...`` is served by the runner's reverse proxy
        (:func:`nbapps.server.proxy.proxy_routes`, asking :func:`~.pages_apps.authorize_app`),
        or by ``runtime.handler_class`` if it has one (a :class:`~nbapps.server.base.BaseHandler`
        subclass declaring its ``permissions``). ``start([ctx])`` and ``stop()``/``close()``
        (sync or async) are called with the server's lifecycle.
        """
        config = self.runtime_configuration()
        if self.runtime is not None or not self.serve_apps:
            return self.runtime
        from ..runner.supervisor import Supervisor
        from .app_source import CatalogAppSource

        runner = config.runner_settings(
            url_prefix=f"{self.base_url}apps/",
            protected_paths=(str(Path(ctx.data_dir).resolve()), *self._protected_files()))
        settings = config.supervisor_settings(Path(ctx.data_dir) / "runtime", runner=runner)
        return Supervisor(settings, CatalogAppSource(ctx))

    _runtime_configuration: RuntimeConfiguration | None = None

    def runtime_configuration(self) -> RuntimeConfiguration:
        """The app runtime's settings (``c.RuntimeConfiguration``), deprecated aliases applied.

        An ``app_*`` trait set to something other than its default still counts (with a
        warning) unless the new name is set too; the check pool's ``app_sandbox`` follows
        ``RuntimeConfiguration.sandbox``.
        """
        if self._runtime_configuration is not None:
            return self._runtime_configuration
        config = RuntimeConfiguration(parent=self)
        explicit = self.config.get("RuntimeConfiguration", {}) \
            if "RuntimeConfiguration" in self.config else {}
        for old, new in DEPRECATED_RUNTIME_ALIASES.items():
            value = getattr(self, old)
            if value == self.traits()[old].default():
                continue
            log.warning("NbappsServer.%s is deprecated: use RuntimeConfiguration.%s", old, new)
            if new not in explicit:
                setattr(config, new, value)
        self.app_sandbox = config.sandbox
        self._runtime_configuration = config
        return config

    _data_dir_lock: DataDirLock | None = None
    _secret: bytes | None = None

    def _protected_files(self) -> tuple[str, ...]:
        """Files outside the data dir that app and check code must not read."""
        return tuple(f for f in (self.config_file, self.cookie_secret_file) if f)

    def secret(self, data_dir: Path) -> bytes:
        """The cookie secret (:func:`~.identity.resolve_cookie_secret`, NBA314 if unusable)."""
        if self._secret is None:
            self._secret, where = resolve_cookie_secret(
                data_dir, value=self.cookie_secret, file=self.cookie_secret_file)
            log.info("cookie secret from %s", where, extra={"source": where})
        return self._secret

    def user_source(self, catalog: Any) -> CatalogUsers:
        """Built-in accounts, or JupyterHub's users (:mod:`.hub_auth`; NBA342 if misconfigured)."""
        if self.auth == "jupyterhub":
            settings = HubConfiguration(parent=self).settings(self.base_url)
            log.info("JupyterHub login: API %s, client %s", settings.api_url, settings.client_id)
            return HubUsers(catalog, settings, cookie_secret=self.secret(self.resolved_data_dir()))
        return CatalogUsers(catalog)

    def build_context(self) -> ServerContext:
        data_dir = self.resolved_data_dir()
        ensure_private_dir(data_dir)
        # first: a second gallery on this data dir is refused before it changes any file
        # (uploads in flight, the runtime folder, the secret)
        self._data_dir_lock = lock_data_dir(data_dir)
        try:
            return self._build_context(data_dir)
        except BaseException:
            self.release_data_dir()
            raise

    def release_data_dir(self) -> None:
        if self._data_dir_lock is not None:
            self._data_dir_lock.release()
            self._data_dir_lock = None

    def _build_context(self, data_dir: Path) -> ServerContext:
        secure_data_dir(data_dir)  # 0700, secrets 0600
        self.secret(data_dir)  # a bad secret stops the start here (NBA314)
        db_url = resolve_db_url(self.db_url or None, data_dir)
        catalog = open_catalog(db_url)
        catalog.forget_expired_sessions()
        catalog.login_max_failures = self.login_max_failures
        catalog.login_window_s = self.login_window_seconds
        store = open_store(self.store_url or None, data_dir, self.store_options)
        options = ServerOptions(
            site_name=self.site_name, max_upload_bytes=self.max_upload_bytes,
            max_unpacked_bytes=self.max_unpacked_bytes, per_page=self.per_page,
            allow_anonymous_apps=self.allow_anonymous_apps,
            gallery_cache_ttl=self.cache_seconds, public_url=self.public_url,
            extra_css=tuple(self.extra_css), base_url=self.base_url,
        )
        ctx = ServerContext(
            options=options, catalog=catalog, store=store,
            identity=IdentityProvider(self.user_source(catalog), session_days=self.session_days),
            authorizer=Authorizer(allow_anonymous_apps=self.allow_anonymous_apps),
            templates=make_template_env(list(self.template_paths), auto_reload=self.debug,
                                        base_url=self.base_url),
            data_dir=data_dir,
            executor=ThreadPoolExecutor(self.worker_threads, thread_name_prefix="nbapps-work"),
            metrics=Metrics(),
            cache=ResultCache(self.cache_seconds),
        )
        ctx.metrics.instrument(catalog, store)  # latency histograms, before anyone calls them
        removed = clean_upload_dir(ctx)
        if removed:
            log.info("removed %d leftover upload file(s) of an interrupted run", removed,
                     extra={"removed": removed})
        ctx.runtime = self.make_runtime(ctx)
        ctx.checks = self.make_check_pool(ctx)
        ctx.runs = self.make_run_pool(ctx)
        ctx.scheduler = self.make_scheduler(ctx)
        return ctx

    def make_scheduler(self, ctx: ServerContext) -> Any:
        """The scheduler of live versions' schedules (:mod:`nbapps.schedules.scheduler`)."""
        from ..schedules.scheduler import Scheduler, SchedulerSettings

        if not self.schedules_enabled:
            return None
        settings = SchedulerSettings(
            tick=self.schedule_tick, allow_seconds=self.schedule_allow_seconds,
            retry_base=self.schedule_retry_base, retry_max=self.schedule_retry_max,
            retries=self.schedule_retries, webhook_url=self.schedule_webhook_url,
            webhook_timeout=self.schedule_webhook_timeout,
            webhook_secret=self.schedule_webhook_secret,
            webhook_attempts=self.schedule_webhook_attempts, public_url=self.public_url,
            base_url=self.base_url, queue_max=self.run_queue_max)
        return Scheduler(ctx.catalog, settings, on_change=ctx.changed,
                         wake_runs=getattr(ctx.runs, "notify", None))

    def make_run_pool(self, ctx: ServerContext) -> Any:
        """The pool of run workers (:mod:`nbapps.runs.pool`), confined like checks."""
        from ..runs.pool import RunPool, RunSettings

        settings = RunSettings(
            data_dir=Path(ctx.data_dir), workers=max(0, self.run_workers),
            queue_max=self.run_queue_max, user_max=self.run_user_max,
            total_timeout=self.run_timeout,
            cell_timeout=self.run_timeout, kill_grace=min(30.0, 5.0 + self.run_timeout / 10),
            keep_days=self.run_keep_days, keep_count=self.run_keep_count, pdf=self.run_pdf,
            fork=self.run_fork,
            sandbox=self.runtime_configuration().sandbox,
            protected_paths=self._protected_files())
        return RunPool(settings, ctx.catalog, ctx.store, on_change=ctx.changed)

    def make_check_pool(self, ctx: ServerContext) -> Any:
        """The pool of check workers (:mod:`nbapps.jobs.pool`), confined like app runners."""
        from ..jobs.pool import CheckPool
        from ..jobs.worker import CheckSettings

        settings = CheckSettings(
            data_dir=Path(ctx.data_dir), workers=max(0, self.check_workers),
            queue_max=self.check_queue_max, cell_timeout=self.check_cell_timeout,
            total_timeout=self.check_total_timeout,
            sandbox=self.runtime_configuration().sandbox,
            check_unchecked=self.check_unchecked_versions,
            protected_paths=self._protected_files())
        return CheckPool(settings, ctx.catalog, ctx.store, on_change=ctx.changed)

    def make_app(self, ctx: ServerContext) -> web.Application:
        base = ctx.options.base_url
        routes = route_table(ctx.runtime)
        rules: list[Any] = []
        secret = self.secret(ctx.data_dir)
        tickets = AppTickets.from_secret(secret, lifetime=self.app_ticket_lifetime)
        origins = AppOrigins.from_settings(self.app_subdomain_host, self.public_url, base)
        if ctx.runtime is not None and getattr(ctx.runtime, "handler_class", None) is None:
            # the runner's reverse proxy takes /apps/<slug>/...; it asks authorize_app first
            from .app_pages import AppPages
            from .asset_warmup import SHARED_ASSETS_FILE, RememberedAssets
            from .previews import authorize_runtime, runtime_frame_url, runtime_observer
            from .proxy import proxy_routes
            from .runner_remote import runner_remote_routes
            from .usage import UsageRecorder

            if ctx.metrics is not None:
                ctx.metrics.watch_runtime(ctx.runtime)
            self.usage = UsageRecorder(ctx)
            runtime = ctx.runtime
            self.peers = Peers("", ctx.catalog, ctx.run, lambda: runtime.http)
            if ctx.metrics is not None:
                ctx.metrics.watch_peers(self.peers)
            # apps by slug and live previews of submitted versions (nbapps.server.previews)
            rules = list(proxy_routes(ctx.runtime, authorize_runtime, prefix=f"{base}apps",
                                      observe=runtime_observer(self.usage, ctx),
                                      tickets=tickets, pages=AppPages(ctx.templates),
                                      frame_url=runtime_frame_url(ctx.options),
                                      origins=origins, remembered=RememberedAssets(
                                          Path(ctx.runtime.runtime_dir) / SHARED_ASSETS_FILE),
                                      peers=self.peers))
            rules += runner_remote_routes(ctx.runtime, base)  # runners the Hub ran elsewhere
            routes = [r for r in routes if r.name != "app-runtime"]
        static_paths = [*self.static_paths, str(STATIC_DIR)]
        settings: dict[str, Any] = {
            "nbapps": ctx,
            "runtime": ctx.runtime,
            "nbapps_routes": routes,
            "nbapps_openapi": openapi_json(routes, base),
            "cookie_secret": secret,
            "nbapps_tickets": tickets,
            "nbapps_app_origins": origins if rules else None,
            "xsrf_cookies": True,
            # cookies stay under the base URL: behind a shared proxy (JupyterHub, Binder) they
            # never reach the other services of the same host; no script reads the XSRF cookie
            # (forms carry the token), so it is HttpOnly like the session
            "xsrf_cookie_kwargs": {"httponly": True, "samesite": "Strict", "path": base},
            "cross_origin_protection": True,
            "trusted_origins": list(self.trusted_origins),
            "static_path": static_paths[-1],
            "static_url_prefix": f"{base}static/",
            "static_handler_class": StaticHandler,
            "static_handler_args": {"path": static_paths[-1], "extra_paths": static_paths[:-1]},
            "default_handler_class": NotFoundHandler,
            "log_function": self._log_request,
            "nbapps_readiness_timeout": self.readiness_timeout,
            "debug": False,
            "compress_response": True,
            "autoreload": False,
            "serve_traceback": False,
            "websocket_ping_interval": 30,
            **self.tornado_settings,
        }
        app = web.Application(rules + tornado_rules(routes, base), **settings)
        host_pattern = origins.host_pattern()
        if rules and host_pattern:  # an app's own host answers its ticket URLs, nothing else
            app.add_handlers(host_pattern, [*rules, (r".*", NotOnAppHost)])
        app.add_transform(RequestIdTransform)  # X-Request-Id on every response
        return app

    def _log_request(self, handler: web.RequestHandler) -> None:
        if not self.access_log:
            return
        status = handler.get_status()
        ms = 1000.0 * handler.request.request_time()
        user = getattr(handler, "_current_user", None)
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 \
            else logging.ERROR
        base = self.base_url
        if status < 400 and handler.request.path.startswith(
                (f"{base}static/", f"{base}healthz", f"{base}readyz")):  # probes: every few s
            level = logging.DEBUG
        level = _expected_answer_level(handler, status, level)
        access_log.log(level, "%s %s %d %.1fms", handler.request.method,
                       redact_ticket(handler.request.path),
                       status, ms, extra={
                           "status": status, "duration_ms": round(ms, 2),
                           "user": getattr(user, "name", None),
                           "ip": handler.request.remote_ip,
                           "route": getattr(handler, "route_name", ""),
                           "request_id": request_id(handler.request),
                       })

    # -- serving ---------------------------------------------------------------------------------

    async def serve(self, ready: threading.Event | None = None,
                    stop: asyncio.Event | None = None, *, install_signals: bool = True) -> None:
        """Run until ``stop`` is set (or SIGTERM/SIGINT); then shut down cleanly."""
        ctx = self.build_context()
        try:
            app = self.make_app(ctx)
            self.stop_event = stop or asyncio.Event()
            self.loop = asyncio.get_running_loop()
            sockets = netutil.bind_sockets(self.port, self.ip)
            self.bound_port = sockets[0].getsockname()[1]
            # forms and JSON bodies are small; the upload handler raises its own limit later
            server = make_http_server(app, xheaders=self.xheaders,
                                      trusted_proxy_hops=self.trusted_proxy_hops,
                                      max_body_size=self.max_request_bytes,
                                      idle_connection_timeout=120)
            server.add_sockets(sockets)
            if install_signals and threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self.loop.add_signal_handler(sig, self._on_signal, sig)
            runtime = ctx.runtime
            await _lifecycle(runtime, ("start",), ctx)
            if ctx.checks is not None:
                ctx.checks.start()
                # "serving at" means the queue is recovered: versions recorded later are not
                # mistaken for ones left without a check
                await self.loop.run_in_executor(None, ctx.checks.wait_ready, 60.0)
            if ctx.runs is not None:
                ctx.runs.start()
                await self.loop.run_in_executor(None, ctx.runs.wait_ready, 60.0)
            if ctx.scheduler is not None:
                ctx.scheduler.start()
            # replicas: follow live versions and listings changed by other gallery processes
            self.live_sync = LiveSync(ctx, self.live_poll_interval, notify=self.live_notify)
            self.live_sync.start()
            hub_watch = self._hub_watch(ctx, app.settings["nbapps_tickets"])
            hub_watch.start()
            heartbeat = Periodic(0, asyncio.sleep, "")
            if self.peers is not None:  # replicas find each other (app kernels: .peers)
                self.peers.url = self.internal_url or listen_url(self.ip, self.bound_port)
                heartbeat = Periodic(self.peers.interval, self.peers.heartbeat,
                                     "the replica heartbeat")
                heartbeat.start()
            host = self.ip if ":" not in self.ip else f"[{self.ip}]"
            url = f"http://{host}:{self.bound_port}{self.base_url}"
            self.url = url
            log.info("nbapps gallery serving at %s", url,
                     extra={"url": url, "data_dir": str(ctx.data_dir),
                            "catalog": repr(ctx.catalog), "store": ctx.store.url})
            if ready is not None:
                ready.set()
        except BaseException:
            self.release_data_dir()  # a failed start leaves the data dir free again
            raise
        try:
            await self.stop_event.wait()
        finally:
            log.info("shutting down")
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), self.shutdown_timeout)
            except asyncio.TimeoutError:
                log.warning("requests still running after %.0f s; closing",
                            self.shutdown_timeout)
            if self.usage is not None:  # the last second of app views is still in memory
                try:
                    await self.usage.flush()
                except Exception:  # noqa: BLE001 - shutdown goes on; counts are not vital
                    log.exception("app usage not written at shutdown")
            if ctx.scheduler is not None:  # first: no new firings while the pools stop
                await self.loop.run_in_executor(None, ctx.scheduler.stop)
            if ctx.checks is not None:  # running checks go back to the queue
                await self.loop.run_in_executor(None, ctx.checks.stop)
            if ctx.runs is not None:  # running runs go back to the queue too
                await self.loop.run_in_executor(None, ctx.runs.stop)
            if self.live_sync is not None:
                await self.live_sync.stop()
            await hub_watch.stop()
            await heartbeat.stop()
            if self.peers is not None:
                await self.peers.leave()
            await _lifecycle(runtime, ("stop", "close"))
            ctx.executor.shutdown(wait=True, cancel_futures=True)
            ctx.catalog.close()
            self.release_data_dir()
            if install_signals and threading.current_thread() is threading.main_thread():
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self.loop.remove_signal_handler(sig)
            log.info("stopped")

    @staticmethod
    def _hub_watch(ctx: ServerContext, tickets: AppTickets) -> Periodic:
        """Re-checks of Hub sessions whose tickets may still be in use without their cookie
        (:meth:`.hub_auth.HubUsers.recheck_watched`); does nothing with built-in accounts."""
        users = hub_users(ctx)
        if users is None:
            return Periodic(0, asyncio.sleep, "")
        window = tickets.lifetime + tickets.granularity  # a ticket's longest life
        interval = max(1.0, min(users.settings.recheck_seconds / 4, 15.0))
        return Periodic(interval, functools.partial(ctx.run, users.recheck_watched, window),
                        "re-checking JupyterHub sessions")

    def _on_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self.stop_event.set()

    def request_stop(self) -> None:
        """Stop from another thread (tests, embedding)."""
        self.loop.call_soon_threadsafe(self.stop_event.set)

    def start(self) -> None:
        asyncio.run(self.serve())


#: old trait of NbappsServer -> its RuntimeConfiguration trait (kept for one release)
DEPRECATED_RUNTIME_ALIASES = {
    "app_pool_size": "pool_size", "app_custom_pool_size": "custom_pool_size",
    "app_sandbox": "sandbox", "app_cell_timeout": "cell_timeout",
}


def _expected_answer_level(handler: web.RequestHandler, status: int, level: int) -> int:
    """The access-log level of an answer a handler planned: its ``access_log_level`` if set;
    else a 503 with ``Retry-After`` (an app starting, busy or backing off: the cause of a
    failure is logged where it happens) is INFO, not ERROR."""
    planned = getattr(handler, "access_log_level", None)
    if isinstance(planned, int):
        return planned
    if status == 503 and "Retry-After" in handler._headers:
        return logging.INFO
    return level


async def _lifecycle(runtime: Any, names: tuple[str, ...], *args: Any) -> None:
    """Call the runtime's first method of ``names`` (with ``args`` if it takes them)."""
    if runtime is None:
        return
    for name in names:
        fn = getattr(runtime, name, None)
        if fn is None:
            continue
        try:
            takes = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            takes = 0
        result = fn(*args[:takes])
        if inspect.isawaitable(result):
            await result
        return


def main(argv: list[str] | None = None) -> None:
    """``python -m nbapps.server.app`` / ``nbapps serve``."""
    app = NbappsServer()
    app.initialize(argv)
    try:
        app.start()
    except NbappsError as exc:  # a refused start is one coded line, as `nbapps serve` prints it
        log.debug("start failed", exc_info=True)
        sys.stderr.write(f"nbapps: error: {exc.code}: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"  fix: {exc.hint}\n")
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":  # pragma: no cover
    main()
