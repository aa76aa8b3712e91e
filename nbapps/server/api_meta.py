"""OpenAPI document (generated from the route table), health check and Prometheus metrics."""
from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..accounts import Permission
from ..codes import CODES
from .authz import PUBLIC, Access, Requirement
from .base import APIHandler, BaseHandler
from .routes import Op, Route

ERROR_SCHEMA = {
    "type": "object", "required": ["error", "message"],
    "properties": {"error": {"type": "string", "pattern": "^NBA[0-9]{3}$",
                             "description": "stable error code"},
                   "message": {"type": "string"}, "hint": {"type": "string"},
                   "details": {}},
}


def _requirement_text(req: Requirement) -> str:
    if req is Access.PUBLIC:
        return "no account needed"
    if req is Access.AUTHENTICATED:
        return "any account"
    if req is Access.OPEN_APPS:
        return "permission view_apps (or anonymous when allowed)"
    return f"permission {req.value}"


def openapi_document(routes: list[Route], base_url: str = "/") -> dict[str, Any]:
    """OpenAPI 3.1 for every ``/api/`` route of the table (one source for routes and docs)."""
    paths: dict[str, Any] = {}
    for route in routes:
        if not route.is_api:
            continue
        docs: dict[str, Op] = getattr(route.handler, "docs", {})
        item: dict[str, Any] = {}
        for method, req in route.handler.permissions.items():  # type: ignore[attr-defined]
            op = docs.get(method) or Op(route.name)
            params = [{"name": p, "in": "path", "required": True,
                       "schema": {"type": "integer" if p == "id" else "string"}}
                      for p in route.params]
            params += [{"name": q.name, "in": "query", "required": q.required,
                        "description": q.description, "schema": q.schema()}
                       for q in op.query]
            entry: dict[str, Any] = {
                "operationId": f"{route.name}-{method.lower()}",
                "summary": op.summary,
                "description": f"Requires {_requirement_text(req)}.",
                "parameters": params,
                "responses": {
                    str(op.ok): {"description": "success",
                                 "content": {op.returns: {"schema": {}}}},
                    "default": {"description": "error",
                                "content": {"application/json": {
                                    "schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if req is not Access.PUBLIC:
                entry["security"] = [{"bearer": []}, {"cookie": []}]
            if op.body:
                entry["requestBody"] = {"required": True, "content": {
                    op.body: {"schema": dict(op.body_schema) if op.body_schema
                              else {"type": "string", "format": "binary"}}}}
            item[method.lower()] = entry
        paths[route.path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "nbapps gallery API", "version": __version__,
                 "description": "Errors have one shape: {\"error\": code, \"message\": ...}. "
                                "Codes: " + ", ".join(c for c in sorted(CODES)
                                                      if c.startswith("NBA3"))},
        # paths are relative to the gallery's base URL (a proxy may serve it under a prefix)
        "servers": [{"url": base_url.rstrip("/") or "/"}],
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "API token (`nbapps user token NAME`)"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "nbapps-session",
                           "description": "login session; state-changing requests also need "
                                          "the `_xsrf` cookie value in `X-XSRFToken`"},
            },
        },
    }


class OpenAPIHandler(APIHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_APPS}
    docs: ClassVar[dict[str, Op]] = {"GET": Op("This document.")}

    def get(self) -> None:
        doc = self.settings["nbapps_openapi"]
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(doc)


#: the catalog pings of /healthz (one at a time; a hung one makes the next ones time out)
_HEALTH_PINGS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbapps-healthz")


class HealthHandler(APIHandler):
    """Liveness and catalog reachability; tells nothing about the catalog's content."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC}

    async def get(self) -> None:
        # off the event loop, with a bound: a database that hangs must not freeze the replica;
        # on a thread of its own, so a busy request pool does not make liveness look slow
        loop = asyncio.get_running_loop()
        try:
            ok = bool(await asyncio.wait_for(
                loop.run_in_executor(_HEALTH_PINGS, self.ctx.catalog.ping), 5.0))
        except asyncio.TimeoutError:
            ok = False
        self.write_json({"status": "ok" if ok else "degraded", "catalog": ok},
                        status=200 if ok else 503)


class Metrics:
    """Request counts and latencies per route (a registry per server, so tests can run many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "nbapps_http_request_duration_seconds", "Request latency by route",
            ["route", "method"], registry=self.registry,
            buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.requests = Counter("nbapps_http_requests_total", "Requests by route and status",
                                ["route", "method", "status"], registry=self.registry)

        self.app_render = Histogram(
            "nbapps_app_render_seconds",
            "Time to a fully sent app response through the proxy, by app and kind "
            "(page: default parameters, custom: query parameters, asset, kernel)",
            ["slug", "kind"], registry=self.registry,
            buckets=(.0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60))
        self.proxy_errors = Counter(
            "nbapps_proxy_errors_total", "Proxied app requests answered with a status >= 500",
            ["slug", "kind", "status"], registry=self.registry)
        self._runtime_collector: RuntimeCollector | None = None
        # the process (CPU, memory, file descriptors) and Python platform, as every exporter
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        call_buckets = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
        self.catalog_calls = Histogram(
            "nbapps_catalog_call_duration_seconds",
            "Catalog method calls (outermost only), by method", ["op"],
            registry=self.registry, buckets=call_buckets)
        self.store_calls = Histogram(
            "nbapps_store_call_duration_seconds",
            "Bundle store method calls (outermost only), by method", ["op"],
            registry=self.registry, buckets=call_buckets)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method).observe(seconds)
        self.requests.labels(route, method, str(status)).inc()

    def observe_app(self, slug: str, kind: str, status: int, seconds: float) -> None:
        """One proxied app request (called by :class:`nbapps.server.usage.UsageRecorder`)."""
        # a websocket's duration is its lifetime, and 3xx/4xx/503 pages are not renders
        if kind != "ws" and status < 400:
            self.app_render.labels(slug, kind).observe(seconds)
        if status >= 500:
            self.proxy_errors.labels(slug, kind, str(status)).inc()

    def instrument(self, catalog: Any, store: Any) -> None:
        """Time every public method call of the server's catalog and store (see
        :func:`time_calls`): the one place their latencies are measured."""
        time_calls(catalog, self.catalog_calls)
        time_calls(store, self.store_calls)

    def watch_runtime(self, runtime: Any) -> None:
        """Export the runner supervisor's state, read at each scrape (no polling task)."""
        if self._runtime_collector is None and runtime is not None \
                and hasattr(runtime, "snapshot"):
            self._runtime_collector = RuntimeCollector(runtime)
            self.registry.register(self._runtime_collector)

    def watch_peers(self, peers: Any) -> None:
        """Export what this replica knows of the others (:mod:`.peers`), read at each scrape."""
        self.registry.register(PeersCollector(peers))


class PeersCollector(Collector):
    """The live peers and the kernel requests forwarded to them (:class:`.peers.Peers`)."""

    def __init__(self, peers: Any) -> None:
        self.peers = peers

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("nbapps_replica_peers",
                                "Other gallery replicas heard of at the last heartbeat",
                                value=len(self.peers.others))
        yield CounterMetricFamily("nbapps_forwarded_kernel_requests",
                                  "Requests for app kernels passed on to the replica that "
                                  "owns them", value=self.peers.forwarded)


def time_calls(obj: Any, histogram: Histogram) -> None:
    """Wrap, on this instance, each public method of ``obj``'s class so its duration goes to
    ``histogram`` labelled with the method name. Only the outermost call of a thread counts (a
    method calling another is one observation); generator functions are left alone (their
    call returns at once). Every holder of ``obj`` (handlers, check pool, runner source) sees
    the timed methods, so no call site changes."""
    depth = threading.local()
    for name, fn in inspect.getmembers(type(obj), inspect.isfunction):
        if name.startswith("_") or inspect.isgeneratorfunction(fn) \
                or inspect.iscoroutinefunction(fn) \
                or isinstance(inspect.getattr_static(type(obj), name),
                              (staticmethod, classmethod)):
            continue
        setattr(obj, name, _timed(getattr(obj, name), histogram.labels(name), depth))


def _timed(method: Callable[..., Any], child: Any, depth: threading.local
           ) -> Callable[..., Any]:
    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        level = getattr(depth, "n", 0)
        depth.n = level + 1
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            depth.n = level
            if level == 0:
                child.observe(time.perf_counter() - t0)
    return timed


#: every runner state, so a state with no runner reads 0 instead of disappearing
RUNNER_STATES = ("starting", "ready", "draining", "stopped", "failed")


class RuntimeCollector(Collector):
    """Gauges from ``Supervisor.snapshot()``, ``.counters`` and ``.total_rss()`` at scrape time."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        snapshot = self.runtime.snapshot()
        states = GaugeMetricFamily("nbapps_runners", "App runner processes by state",
                                   labels=["state"])
        by_state = dict.fromkeys(RUNNER_STATES, 0)
        for r in snapshot:
            by_state[str(r.get("state"))] = by_state.get(str(r.get("state")), 0) + 1
        for state, n in by_state.items():
            states.add_metric([state], n)
        yield states
        kernels = GaugeMetricFamily("nbapps_live_kernels",
                                    "Kernels alive in app runners (pooled and in use), by app",
                                    labels=["slug"])
        in_use = GaugeMetricFamily("nbapps_kernels_in_use", "Kernels serving a page, by app",
                                   labels=["slug"])
        per_app: dict[str, list[int]] = {}
        for r in snapshot:
            acc = per_app.setdefault(str(r.get("slug")), [0, 0])
            acc[0] += int(r.get("kernels") or 0)
            acc[1] += int(r.get("kernels_in_use") or 0)
        for slug, (alive, used) in sorted(per_app.items()):
            kernels.add_metric([slug], alive)
            in_use.add_metric([slug], used)
        yield kernels
        yield in_use
        total_rss = getattr(self.runtime, "total_rss", None)
        if callable(total_rss):
            yield GaugeMetricFamily("nbapps_runners_rss_bytes",
                                    "Resident memory of all runners and their kernels",
                                    value=float(total_rss()))
        counters = getattr(self.runtime, "counters", None)
        if isinstance(counters, dict):
            events = CounterMetricFamily("nbapps_runner_events",
                                         "Supervisor events (starts, crashes, restarts, ...)",
                                         labels=["event"])
            for name, n in sorted(counters.items()):
                events.add_metric([str(name)], float(n))
            yield events


class MetricsHandler(BaseHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_AUDIT}
    kind = "api"

    def get(self) -> None:
        metrics = self.ctx.metrics
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.registry) if metrics else b"")


def openapi_json(routes: list[Route], base_url: str = "/") -> str:
    return json.dumps(openapi_document(routes, base_url), indent=1)
