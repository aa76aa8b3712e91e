"""Hostile query strings and JSON bodies on every route, as every role: a coded 400 (NBA331) for
a declared parameter with a value outside its type or list, never a 500.

Walks the route table like ``test_server_authz`` (its probes give each route a request that
passes authorization): declared query parameters (the OpenAPI ``query`` of API methods, or a
page's ``query_params``) get wrong values of their type and must answer NBA331 to a role that may
use the route; every route gets unknown or hostile values for the parameter names the gallery
uses anywhere and must not fail; JSON methods get bodies nested far too deep.
"""
from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from nbapps.server.authz import Authorizer
from nbapps.server.routes import Param, route_table
from tests.server_harness import (
    ROLE_USER,
    Browser,
    probe_gallery,
)
from tests.test_server_authz import PROBES, ROLES, Probe, _request, expected_status

#: wrong values per declared type (a list of values: "bogus" and friends)
BAD_VALUES = {
    "enum": ["bogus", "APPROVED", "approved\u0000"],
    "integer": ["abc", "99999999999999999999", "\u00b2", "1.5"],
    "boolean": ["maybe", "2"],
}
#: every query parameter name the gallery reads somewhere, each sent to every route
NAMES = ("state", "sort", "role", "mine", "page", "per_page", "limit", "before_id", "since",
         "format", "q", "tag", "category", "next", "done", "slug", "prefix", "app", "actor",
         "action", "target", "decision", "id", "name")
#: raw (already %-encoded) hostile values for those names
HOSTILE = ("bogus", "%ff%fe", "%00%01", quote("\u00b2" * 100), "-99999999999999999999999")
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 5_000 + b"1" + b"}" * 5_000
JUST_TOO_DEEP = b'{"comment":' + b"[" * 40 + b"]" * 40 + b"}"


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with probe_gallery(tmp_path_factory.mktemp("hostile")) as g:
        yield g


def no_keepalive_sessions(g: Any) -> dict:
    """The clients ``_request`` uses, one connection per request: the upload route (a
    streaming handler) closes a kept-alive connection after refusing a request before reading
    its body, and a client that reuses it sees a reset on its *next* request (tornado; seen
    here, not what these tests are about)."""
    def client(**kw: Any) -> httpx.Client:
        return httpx.Client(base_url=g.url, follow_redirects=False, timeout=60,
                            limits=httpx.Limits(max_keepalive_connections=0), **kw)

    sessions: dict = {}
    for role in ROLES:
        who = None if role == "anonymous" else ROLE_USER[role]
        headers = {"Authorization": f"Bearer {g.users[who].token}"} if who else {}
        sessions[("api", role)] = client(headers=headers)
        browser = Browser(client())
        if who:
            browser.login(who, g.users[who].password)
        sessions[("page", role)] = browser
    return sessions


def declared(route: Any, method: str) -> tuple[Param, ...]:
    op = getattr(route.handler, "docs", {}).get(method)
    if op is not None:
        return tuple(op.query)
    return tuple(getattr(route.handler, "query_params", {}).get(method, ()))


def kind_of(param: Param) -> str | None:
    return "enum" if param.enum else param.type if param.type in BAD_VALUES else None


def allowed(route: Any, method: str, role: str) -> bool:
    user = None if role == "anonymous" else type("U", (), {"role": role})()
    return Authorizer().is_allowed(user, route.handler.permissions[method])


def routes_and_methods() -> list[tuple[Any, str, Probe | None]]:
    return [(r, m, PROBES.get((r.name, m))) for r in route_table() for m in r.handler.permissions]


def _code(r: Any) -> str:
    if r.headers.get("content-type", "").startswith("application/json"):
        return str(r.json().get("error"))
    return "NBA331" if "NBA331" in r.text else r.text[:200]


def test_declared_parameters_refuse_values_outside_their_type(gallery):
    sessions = no_keepalive_sessions(gallery)
    failures, checked = [], 0
    try:
        for route, method, probe in routes_and_methods():
            for param in declared(route, method):
                kind = kind_of(param)
                if kind is None or probe is None:
                    continue
                for n, value in enumerate(BAD_VALUES[kind]):
                    p = dataclasses.replace(probe, query=f"{param.name}={quote(value)}")
                    for role in ROLES:
                        if n and not allowed(route, method, role):
                            continue  # refused before the query is looked at: once is enough
                        r = _request(gallery, route, method, role, p, sessions)
                        checked += 1
                        want = 400 if allowed(route, method, role) \
                            else expected_status(route, method, role, probe)
                        if r.status_code != want or (want == 400 and _code(r) != "NBA331"):
                            failures.append(f"{method} {route.path}?{param.name}={value[:20]!r} "
                                            f"as {role}: {r.status_code} {r.text[:120]}")
                if param.enum:  # and every listed value is accepted
                    for value in param.enum:
                        p = dataclasses.replace(probe, query=f"{param.name}={quote(value)}")
                        r = _request(gallery, route, method, "admin", p, sessions)
                        checked += 1
                        if r.status_code != probe.ok:
                            failures.append(f"{method} {route.path}?{param.name}={value} "
                                            f"refused: {r.status_code} {r.text[:120]}")
    finally:
        for s in sessions.values():
            s.close()
    assert not failures, "\n".join(failures)
    assert checked > 100


def test_no_route_fails_on_hostile_query_strings(gallery):
    sessions = no_keepalive_sessions(gallery)
    failures, checked = [], 0
    try:
        for route, method, probe in routes_and_methods():
            names = [n for n in NAMES if n not in {p.name for p in declared(route, method)}]
            base = probe or Probe(200)
            # a role refused by the route never gets to its parameters (test_server_authz):
            # the least and the most privileged role that may use it
            users = [r for r in ROLES if allowed(route, method, r)]
            # login and logout probes pay a password hash each: fewer values there
            values = HOSTILE[:2] if route.name in ("login", "logout") else HOSTILE
            for i, value in enumerate(values):
                p = dataclasses.replace(base, query="&".join(f"{n}={value}" for n in names))
                for role in dict.fromkeys(users[:1] + users[-1:] if i < 2 else users[:1]):
                    r = _request(gallery, route, method, role, p, sessions)
                    checked += 1
                    if r.status_code >= 500 and r.status_code != base.ok:
                        failures.append(f"{method} {route.path} ({value[:20]}) as {role}: "
                                        f"{r.status_code} {r.text[:160]}")
    finally:
        for s in sessions.values():
            s.close()
    assert not failures, "\n".join(failures)
    assert checked >= len(HOSTILE) * len(PROBES)


def test_deeply_nested_json_bodies_are_a_coded_400(gallery):
    sessions = no_keepalive_sessions(gallery)
    failures = []
    try:
        for route, method, probe in routes_and_methods():
            if not route.is_api or method == "GET":
                continue
            op = route.handler.docs.get(method)
            for n, body in enumerate((DEEP_ARRAY, DEEP_OBJECT, JUST_TOO_DEEP)):
                p = dataclasses.replace(probe or Probe(200), body=body)
                for role in ROLES:
                    if n and not allowed(route, method, role):
                        continue  # refused before the body is read: once is enough
                    r = _request(gallery, route, method, role, p, sessions)
                    json_method = op is not None and op.body == "application/json"
                    if json_method and allowed(route, method, role):
                        ok = r.status_code == 400 and r.json()["error"] == "NBA331"
                    else:
                        ok = r.status_code < 500
                    if not ok:
                        failures.append(f"{method} {route.path} as {role} ({len(body)} bytes):"
                                        f" {r.status_code} {r.text[:160]}")
    finally:
        for s in sessions.values():
            s.close()
    assert not failures, "\n".join(failures)


def test_openapi_lists_the_allowed_values(gallery):
    with gallery.client("vic") as c:
        spec = c.get("/api/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/submissions"]["get"]["parameters"]}
    assert "approved" in params["state"]["schema"]["enum"]
    params = {p["name"]: p for p in spec["paths"]["/api/apps"]["get"]["parameters"]}
    assert "title" in params["sort"]["schema"]["enum"]
