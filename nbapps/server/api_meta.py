"""OpenAPI document (generated from the route table), health check and Prometheus metrics."""
from __future__ import annotations

import json
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

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


def openapi_document(routes: list[Route]) -> dict[str, Any]:
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
                        "description": q.description, "schema": {"type": q.type}}
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


class HealthHandler(APIHandler):
    """Liveness and catalog reachability; tells nothing about the catalog's content."""

    permissions: ClassVar[dict[str, Requirement]] = {"GET": PUBLIC}

    def get(self) -> None:
        ok = self.ctx.catalog.ping()
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

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method).observe(seconds)
        self.requests.labels(route, method, str(status)).inc()


class MetricsHandler(BaseHandler):
    permissions: ClassVar[dict[str, Requirement]] = {"GET": Permission.VIEW_AUDIT}
    kind = "api"

    def get(self) -> None:
        metrics = self.ctx.metrics
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(metrics.registry) if metrics else b"")


def openapi_json(routes: list[Route]) -> str:
    return json.dumps(openapi_document(routes), indent=1)
