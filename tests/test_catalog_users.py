"""Users, logins with rate limiting, API tokens (both DBs)."""
from __future__ import annotations

import json

import pytest

from nbapps.accounts import Role, TooManyAttempts
from nbapps.errors import AuthRequired, Conflict, NotFound, UsageError
from tests.catalog_helpers import add_users

PW = "correct horse battery"


def test_create_get_list_users(catalog):
    ana = catalog.create_user("ana", "analyst", PW, actor="cli:root")
    assert (ana.name, ana.role, ana.disabled) == ("ana", Role.ANALYST, False)
    assert ana.created_at.tzinfo is not None
    catalog.create_user("testuser<'&\">", Role.VIEWER, None, actor="cli:root")
    assert [u.name for u in catalog.list_users()] == ["ana", "testuser<'&\">"]
    assert catalog.get_user("testuser<'&\">").role is Role.VIEWER
    assert catalog.find_user("nobody") is None
    assert catalog.count_users() == 2
    with pytest.raises(NotFound):
        catalog.get_user("nobody")
    with pytest.raises(Conflict) as err:
        catalog.create_user("ana", "admin", None, actor="x")
    assert err.value.code == "NBA307"
    for bad in [("a b", "viewer", None), ("ok", "root", None), ("ok2", "viewer", "short")]:
        with pytest.raises(UsageError) as err:
            catalog.create_user(*bad, actor="x")
        assert err.value.code == "NBA311"
    ev = catalog.list_audit(action="user.create")
    assert [(e.actor, e.target, e.details) for e in ev][-1] == (
        "cli:root", "ana", {"role": "analyst"})


def test_role_password_disable_are_audited(catalog):
    catalog.create_user("ana", "analyst", PW, actor="cli:root")
    assert catalog.set_role("ana", "reviewer", actor="adam").role is Role.REVIEWER
    catalog.set_password("ana", "another good one", actor="adam")
    assert catalog.verify_login("ana", "another good one").name == "ana"
    with pytest.raises(AuthRequired):
        catalog.verify_login("ana", PW)
    assert catalog.disable_user("ana", actor="adam").disabled
    assert catalog.list_users(include_disabled=False) == []
    assert not catalog.disable_user("ana", actor="adam", disabled=False).disabled
    actions = [e.action for e in reversed(catalog.list_audit(target="ana"))]
    assert actions == ["user.create", "user.role", "user.password", "login", "login.failed",
                       "user.disable", "user.enable"]
    assert catalog.list_audit(action="user.role")[0].details == {
        "old": "analyst", "new": "reviewer"}
    with pytest.raises(UsageError):
        catalog.set_password("ana", "x", actor="adam")


def test_login_failures_are_one_message(catalog):
    catalog.create_user("ana", "analyst", PW, actor="t")
    catalog.create_user("dis", "analyst", PW, actor="t")
    catalog.disable_user("dis", actor="t")
    messages = set()
    for name, pw in [("ana", "wrong"), ("nobody", PW), ("dis", PW), ("ana", "")]:
        with pytest.raises(AuthRequired) as err:
            catalog.verify_login(name, pw, ip="10.0.0.1")
        assert err.value.code == "NBA308" and err.value.http_status == 401
        messages.add(err.value.message)
    assert len(messages) == 1
    reasons = [e.details["reason"] for e in catalog.list_audit(action="login.failed")]
    assert reasons == ["wrong password", "disabled", "unknown user", "wrong password"]
    ok = catalog.verify_login("ana", PW, ip="10.0.0.1")
    assert ok.name == "ana"
    assert catalog.list_audit(action="login")[0].ip == "10.0.0.1"


def test_login_rate_limit_per_user_and_ip(catalog):
    catalog.create_user("ana", "analyst", PW, actor="t")
    catalog.login_max_failures = 3
    for _ in range(3):
        with pytest.raises(AuthRequired):
            catalog.verify_login("ana", "wrong", ip="10.0.0.1")
    assert catalog.recent_login_failures("ana", "10.0.0.1") == 3
    with pytest.raises(TooManyAttempts) as err:  # even the right password is refused now
        catalog.verify_login("ana", PW, ip="10.0.0.1")
    assert err.value.code == "NBA309" and err.value.http_status == 429
    # another address is not blocked; a success there does not unblock the first one
    assert catalog.verify_login("ana", PW, ip="10.0.0.2").name == "ana"
    with pytest.raises(TooManyAttempts):
        catalog.verify_login("ana", PW, ip="10.0.0.1")
    # after the window, the address may try again; a success resets its counter
    catalog.login_window_s = 0
    assert catalog.verify_login("ana", PW, ip="10.0.0.1").name == "ana"
    catalog.login_window_s = 900
    assert catalog.recent_login_failures("ana", "10.0.0.1") == 0


def test_login_rate_limit_per_ip_across_names(catalog):
    catalog.create_user("ana", "analyst", PW, actor="t")
    catalog.login_max_failures_per_ip = 4
    for i in range(4):
        with pytest.raises(AuthRequired):
            catalog.verify_login(f"guess{i}", "x", ip="10.9.9.9")
    with pytest.raises(TooManyAttempts):
        catalog.verify_login("ana", PW, ip="10.9.9.9")
    assert catalog.verify_login("ana", PW, ip="10.0.0.3").name == "ana"


def test_rehash_on_login(catalog):
    from argon2 import PasswordHasher
    from sqlalchemy import select, update

    from nbapps.catalog.models import User

    catalog.create_user("ana", "analyst", PW, actor="t")
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PW)
    with catalog._write() as s:
        s.execute(update(User).where(User.name == "ana").values(password_hash=weak))
    catalog.verify_login("ana", PW)
    with catalog._read() as s:
        stored = s.scalar(select(User.password_hash).where(User.name == "ana"))
    assert stored != weak and stored.startswith("$argon2id$")
    assert catalog.verify_login("ana", PW).name == "ana"


def test_tokens(catalog):
    add_users(catalog, ana="analyst", bob="viewer")
    token, info = catalog.create_token("ana", actor="ana", label="laptop")
    assert token.startswith(info.prefix) and info.active and info.label == "laptop"
    user = catalog.verify_token(token)
    assert user.name == "ana"
    listed = catalog.list_tokens("ana")
    assert [t.prefix for t in listed] == [info.prefix]
    assert listed[0].last_used_at is not None
    # the plain token is stored nowhere
    from sqlalchemy import select

    from nbapps.catalog.models import ApiToken
    with catalog._read() as s:
        stored = s.execute(select(ApiToken.token_hash, ApiToken.prefix)).all()
    assert all(token not in (h, p) for h, p in stored)
    for bad in ["", "nba_", token + "x", token[:-1], "Bearer " + token, "x" * 500]:
        with pytest.raises(AuthRequired) as err:
            catalog.verify_token(bad)
        assert err.value.code == "NBA310"
    t2, info2 = catalog.create_token("ana", actor="ana")
    with pytest.raises(NotFound):
        catalog.revoke_token("bob", info.prefix, actor="adam")
    revoked = catalog.revoke_token("ana", info.prefix, actor="ana")
    assert not revoked.active
    with pytest.raises(AuthRequired):
        catalog.verify_token(token)
    assert catalog.verify_token(t2).name == "ana"
    assert [t.prefix for t in catalog.list_tokens("ana", include_revoked=False)] == [
        info2.prefix]
    catalog.revoke_token("ana", t2, actor="ana")  # the whole token works too
    with pytest.raises(NotFound):
        catalog.revoke_token("ana", t2, actor="ana")
    t3, _ = catalog.create_token("bob", actor="adam")
    catalog.disable_user("bob", actor="adam")
    with pytest.raises(AuthRequired):
        catalog.verify_token(t3)
    actions = [e.action for e in reversed(catalog.list_audit()) if e.action.startswith("tok")]
    assert actions == ["token.create", "token.create", "token.revoke", "token.revoke",
                       "token.create"]


def test_ambiguous_token_prefix(catalog):
    add_users(catalog, ana="analyst")
    for _ in range(3):
        catalog.create_token("ana", actor="ana")
    with pytest.raises((Conflict, NotFound)):
        catalog.revoke_token("ana", "nba_", actor="ana")
    with pytest.raises(UsageError):
        catalog.revoke_token("ana", "nb", actor="ana")
    assert len(catalog.list_tokens("ana", include_revoked=False)) == 3


def test_throttled_logins_write_one_audit_row_per_window(catalog):
    """A script that keeps guessing after the limit adds one ``login.throttled`` row per user
    name + address and window, not one per attempt; the others are counted."""
    catalog.create_user("ana", "analyst", PW, actor="t")
    catalog.login_max_failures = 3
    for _ in range(3):
        with pytest.raises(AuthRequired):
            catalog.verify_login("ana", "wrong", ip="10.0.0.1")
    before = len(catalog.list_audit(limit=10_000))
    for _ in range(40):
        with pytest.raises(TooManyAttempts):
            catalog.verify_login("ana", "guess", ip="10.0.0.1")
    rows = catalog.list_audit(limit=10_000)
    assert len(rows) == before + 1
    assert rows[0].action == "login.throttled" and rows[0].target == "ana"
    assert rows[0].details["unrecorded_before"] == 0
    assert catalog.unrecorded_throttled_logins() == 39
    # the lockout lasts a window after the last real failure (refusals do not extend it)
    assert catalog.recent_login_failures("ana", "10.0.0.1") == 3
    # a new window: one more row, carrying the count of the refusals it did not record
    catalog.login_window_s = 0
    catalog.login_max_failures = 0  # every attempt is over the limit now
    with pytest.raises(TooManyAttempts):
        catalog.verify_login("ana", "guess", ip="10.0.0.1")
    newest = catalog.list_audit(action="login.throttled")[0]
    assert newest.details["unrecorded_before"] == 39
    assert catalog.unrecorded_throttled_logins() == 0


def test_guessing_many_names_from_one_address_is_one_row(catalog):
    catalog.login_max_failures_per_ip = 4
    for i in range(4):
        with pytest.raises(AuthRequired):
            catalog.verify_login(f"guess{i}", "x", ip="10.9.9.9")
    for i in range(30):
        with pytest.raises(TooManyAttempts):
            catalog.verify_login(f"other{i}", "x", ip="10.9.9.9")
    throttled = catalog.list_audit(action="login.throttled")
    assert len(throttled) == 1 and throttled[0].target == "" and throttled[0].ip == "10.9.9.9"
    assert throttled[0].details["limit"] == "address"


def test_a_megabyte_user_name_does_not_land_in_the_audit_log(catalog):
    catalog.create_user("ana", "analyst", PW, actor="t")
    huge = "a" * 1_000_000
    with pytest.raises(AuthRequired):
        catalog.verify_login(huge, PW, ip="10.0.0.1")
    with pytest.raises(AuthRequired):  # a prefix of a real name plus junk never matches it
        catalog.verify_login("ana" + "x" * 100, PW, ip="10.0.0.1")
    catalog.audit("note", actor=huge, target=huge, ip=huge,
                  details={"text": huge, "deep": [[[[[[[[[[["x"]]]]]]]]]]]})
    for ev in catalog.list_audit(limit=100):
        assert len(ev.actor) <= 100 and len(ev.target) <= 300 and len(ev.ip or "") <= 64
        assert len(json.dumps(ev.details)) < 25_000
    failed = catalog.list_audit(action="login.failed")
    assert {len(e.target) for e in failed} == {65}  # 64 characters and "…"
    assert all(e.details["reason"] == "unknown user" for e in failed)
