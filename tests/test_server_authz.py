"""Authorization matrix: every route × every role → expected status, from one table.

The expected status is computed from the handlers' declared permissions and the role table
(:mod:`nbapps.server.authz`): a role without the permission gets 401 (anonymous; a page GET
redirects to the login page instead) or 403; a role with it gets the probe's own outcome (the
probes are built to stop right after authorization: an invalid body, an unknown name...). Routes
with object-level rules (a submission is visible to reviewers and its author only) list the
exceptions explicitly. A test also checks that the table covers every route and method.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.web import RequestHandler

from nbapps.server.authz import Authorizer
from nbapps.server.routes import route_table
from tests.server_harness import ROLE_USER, catalog_of, probe_gallery, seed_version, thread_gallery

ROLES = ("anonymous", "viewer", "analyst", "reviewer", "admin")
LONG = "x" * 10_001


@dataclass(frozen=True)
class Probe:
    ok: int  # status for roles holding the permission
    body: Any = None  # dict → form (pages) / JSON (API); bytes → raw
    query: str = ""
    #: per-role overrides of the computed status (object-level rules)
    expect: dict[str, int] = field(default_factory=dict)
    fresh_session: bool = False


# (route name, method) -> probe. Path values: {slug} live app, {id} a submission by "alf",
# {name} "nobody" (no such user), {prefix} an unknown token prefix, {path} "".
P = Probe
PROBES: dict[tuple[str, str], Probe] = {
    ("gallery", "GET"): P(200),
    ("login", "GET"): P(302, expect={"anonymous": 200}),
    ("login", "POST"): P(401, body={"username": "nobody", "password": "wrong-password"}),
    ("logout", "POST"): P(302, fresh_session=True),
    # JupyterHub login (nbapps.server.hub_auth): not enabled in this gallery -> NBA349
    ("hub-login", "GET"): P(404),
    ("hub-oauth-callback", "GET"): P(404),
    ("app", "GET"): P(200),
    ("app-thumbnail", "GET"): P(200),
    ("app-rollback", "POST"): P(409, body={"comment": "probe"}),
    # schedules (nbapps.server.pages_schedules / api_schedules): the live app has none
    ("app-schedule", "POST"): P(404, body={"paused": "1"}),
    ("api-app-schedules", "GET"): P(200),
    ("api-app-schedule", "PATCH"): P(404, body={"paused": True}),
    ("app-runtime", "GET"): P(503),
    ("app-open", "GET"): P(200),
    ("app-live", "GET"): P(200),
    # snapshots (nbapps.server.snapshots): the live app has none -> the live app; no such run
    ("app-snapshot", "GET"): P(302),
    ("app-snapshot-report", "GET"): P(404),
    ("api-app-status", "GET"): P(200),
    ("review-queue", "GET"): P(200),
    ("my-submissions", "GET"): P(200),
    ("submission", "GET"): P(200, expect={"analyst": 403}),
    ("submission-notebook", "GET"): P(200, expect={"analyst": 403}),
    ("submission-thumbnail", "GET"): P(200, expect={"analyst": 403}),
    ("submission-decision", "POST"): P(400, body={"decision": "maybe"}),
    ("submission-comment", "POST"): P(400, body={"comment": ""}),
    ("submission-withdraw", "POST"): P(400, body={"comment": LONG}),
    # the seeded version was never checked by the gallery: it cannot run as a preview (NBA361)
    ("submission-preview", "GET"): P(409, expect={"analyst": 403}),
    ("account", "GET"): P(200),
    ("account-token-create", "POST"): P(200, body={"label": "probe"}),
    ("account-token-revoke", "POST"): P(404, body={}),
    ("admin-users", "GET"): P(200),
    ("admin-users", "POST"): P(400, body={"name": "", "role": "viewer"}),
    ("admin-user-update", "POST"): P(404, body={"role": "viewer"}),
    ("admin-user-token", "POST"): P(404, body={}),
    ("admin-user-token-revoke", "POST"): P(404, body={}),
    ("admin-audit", "GET"): P(200),
    ("admin-audit-export", "GET"): P(200),
    ("api-openapi", "GET"): P(200),
    ("api-me", "GET"): P(200),
    ("api-my-tokens", "GET"): P(200),
    ("api-my-tokens", "POST"): P(400, body={"label": 5}),
    ("api-my-token", "DELETE"): P(404),
    ("api-apps", "GET"): P(200, query="q=probe"),
    ("api-tags", "GET"): P(200),
    ("api-categories", "GET"): P(200),
    ("api-app", "GET"): P(200),
    ("api-app", "PATCH"): P(400, body={"featured": 0}),
    ("api-app-rollback", "POST"): P(400, body={"comment": 5}),
    # runs (nbapps.server.api_runs): no run exists in the probe gallery
    ("api-app-runs", "GET"): P(200),
    ("api-app-runs", "POST"): P(400, body={"parameters": {"nope": 1}}),
    ("api-run", "GET"): P(404),
    ("api-run", "DELETE"): P(404),
    ("api-run-cancel", "POST"): P(404, body={}),
    ("api-run-artifact", "GET"): P(404),
    ("api-submissions", "GET"): P(200),
    ("api-submissions", "POST"): P(400, body=b""),
    ("api-submission", "GET"): P(200, expect={"analyst": 403}),
    ("api-submission-decision", "POST"): P(400, body={"decision": "maybe"}),
    ("api-submission-withdraw", "POST"): P(400, body={"comment": 5}),
    ("api-submission-comments", "GET"): P(200, expect={"analyst": 403}),
    ("api-submission-comments", "POST"): P(400, body={"comment": ""}),
    ("api-submission-check", "GET"): P(200, expect={"analyst": 403}),
    ("api-submission-check", "POST"): P(400, body=b"{not json"),
    ("api-users", "GET"): P(200),
    ("api-users", "POST"): P(400, body={}),
    ("api-user", "GET"): P(404),
    ("api-user", "PATCH"): P(404, body={"role": "viewer"}),
    ("api-user-tokens", "GET"): P(404),
    ("api-user-tokens", "POST"): P(404, body={}),
    ("api-user-tokens", "DELETE"): P(400),
    ("api-audit", "GET"): P(200),
    ("health", "GET"): P(200),
    ("ready", "GET"): P(200),
    ("metrics", "GET"): P(200),
}


class _Role:
    def __init__(self, role: str) -> None:
        self.role = role


def expected_status(route: Any, method: str, role: str, probe: Probe) -> int:
    if role in probe.expect:
        return probe.expect[role]
    requirement = route.handler.permissions[method]
    user = None if role == "anonymous" else _Role(role)
    if Authorizer().is_allowed(user, requirement):
        return probe.ok
    if role == "anonymous":
        return 302 if (not route.is_api and method == "GET" and route.handler.kind == "page") \
            else 401
    return 403


def implemented_methods(handler: type[RequestHandler]) -> set[str]:
    out = set()
    for method in handler.SUPPORTED_METHODS:
        fn = getattr(handler, method.lower(), None)
        if fn is not None and fn is not getattr(RequestHandler, method.lower(), None):
            out.add(method)
    return out


def test_every_route_declares_permissions_for_its_methods():
    for route in route_table():
        declared = set(route.handler.permissions)
        implemented = implemented_methods(route.handler)
        assert implemented <= declared, f"{route.name}: undeclared {implemented - declared}"
        assert declared <= implemented, f"{route.name}: declared, missing {declared - implemented}"


def test_probe_table_covers_every_route_and_method():
    wanted = {(r.name, m) for r in route_table() for m in r.handler.permissions}
    assert wanted == set(PROBES), (wanted - set(PROBES), set(PROBES) - wanted)


def test_api_methods_are_documented():
    for route in route_table():
        if route.is_api:
            docs = getattr(route.handler, "docs", {})
            assert set(route.handler.permissions) <= set(docs), route.name
            for op in docs.values():
                assert op.summary and inspect.cleandoc(op.summary)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    with probe_gallery(tmp_path_factory.mktemp("authz")) as g:
        yield g


def _request(g, route, method: str, role: str, probe: Probe, sessions: dict) -> Any:
    path = route.url(**g.values)
    if probe.query:
        path += "?" + probe.query
    if route.is_api or route.name in ("health", "ready", "metrics"):
        client = sessions.setdefault(("api", role), g.client(
            None if role == "anonymous" else ROLE_USER[role]))
        kw: dict[str, Any] = {}
        if isinstance(probe.body, bytes):
            kw["content"] = probe.body
        elif probe.body is not None:
            kw["json"] = probe.body
        if role == "anonymous" and method != "GET":
            # an anonymous browser would have an XSRF cookie: show that 401 is about identity
            b = sessions.setdefault(("page", role), g.browser(None))
            return b.api(method, path, **kw)
        return client.request(method, path, **kw)
    if probe.fresh_session:
        b = g.browser(None if role == "anonymous" else ROLE_USER[role])
    else:
        b = sessions.get(("page", role))
        if b is None:
            b = g.browser(None if role == "anonymous" else ROLE_USER[role])
            sessions[("page", role)] = b
    if method == "GET":
        return b.get(path)
    return b.post_form(path, probe.body or {})


def test_authorization_matrix(gallery):
    sessions: dict = {}
    failures = []
    checked = 0
    try:
        for route in route_table():
            for method in route.handler.permissions:
                probe = PROBES[(route.name, method)]
                for role in ROLES:
                    want = expected_status(route, method, role, probe)
                    r = _request(gallery, route, method, role, probe, sessions)
                    checked += 1
                    if r.status_code != want:
                        failures.append(f"{method} {route.path} as {role}: {r.status_code}, "
                                        f"expected {want}: {r.text[:200]}")
                    elif want == 302 and role == "anonymous":
                        assert r.headers["location"].startswith("/login?next=")
                    elif want in (401, 403) and route.is_api:
                        assert r.json()["error"] in ("NBA300", "NBA301"), r.text
    finally:
        for s in sessions.values():
            s.close()
    assert not failures, "\n".join(failures)
    assert checked >= 5 * len(PROBES)


def test_anonymous_apps_setting(tmp_path):
    with thread_gallery(tmp_path, args=["--allow-anonymous-apps"]) as g:
        with catalog_of(g) as (cat, store):
            live = seed_version(cat, store, slug="open-app", submitter="ana", title="Open")
            cat.decide(live.version.id, "rita", "approve", "ok")
            seed_version(cat, store, slug="draft-app", submitter="ana", title="Draft")
        with g.client() as anon:
            assert anon.get("/apps/open-app/").status_code == 503  # runtime placeholder
            assert anon.get("/apps/draft-app/").status_code == 404  # never unapproved
            assert anon.get("/").status_code == 302  # the gallery still needs an account
            assert anon.get("/api/apps").status_code == 401
