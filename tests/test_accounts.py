from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from nbapps import accounts
from nbapps.accounts import Permission, Role
from nbapps.errors import UsageError


def test_roles_are_ordered_and_permissions_grow():
    assert Role.VIEWER < Role.ANALYST < Role.REVIEWER < Role.ADMIN
    assert Role.ADMIN >= Role.REVIEWER and not Role.ANALYST >= Role.REVIEWER
    ordered = list(Role)
    for low, high in zip(ordered, ordered[1:], strict=False):
        assert accounts.ROLE_PERMISSIONS[low] < accounts.ROLE_PERMISSIONS[high]
    assert Role.VIEWER.can(Permission.VIEW_APPS) and not Role.VIEWER.can(Permission.SUBMIT)
    assert Role.ANALYST.can(Permission.SUBMIT) and not Role.ANALYST.can(Permission.REVIEW)
    assert Role.REVIEWER.can(Permission.ROLLBACK) and not Role.REVIEWER.can(
        Permission.MANAGE_USERS)
    assert all(Role.ADMIN.can(p) for p in Permission)


def test_role_parse():
    assert Role.parse(" Reviewer ") is Role.REVIEWER
    with pytest.raises(UsageError) as err:
        Role.parse("root")
    assert err.value.code == "NBA311" and "viewer" in err.value.message


def test_password_hash_roundtrip_and_rehash():
    h = accounts.hash_password("correct horse")
    assert h.startswith("$argon2id$") and "correct horse" not in h
    assert accounts.verify_password(h, "correct horse") == (True, None)
    assert accounts.verify_password(h, "wrong") == (False, None)
    assert accounts.verify_password(None, "x") == (False, None)
    assert accounts.verify_password("not-a-hash", "x") == (False, None)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash("pw-old-params")
    ok, new = accounts.verify_password(weak, "pw-old-params")
    assert ok and new is not None and new != weak
    assert accounts.verify_password(new, "pw-old-params") == (True, None)


def test_generated_passwords_are_random_and_long_enough():
    pws = {accounts.generate_password() for _ in range(50)}
    assert len(pws) == 50
    assert all(len(p) >= 20 for p in pws)
    accounts.check_password_strength(next(iter(pws)))
    with pytest.raises(UsageError):
        accounts.check_password_strength("short")


def test_tokens():
    t = accounts.generate_token()
    assert t.startswith("nba_") and len(t) >= 40 and accounts.looks_like_token(t)
    h = accounts.hash_token(t)
    assert len(h) == 64 and t not in h
    assert accounts.token_matches(t, h)
    assert not accounts.token_matches(t + "x", h)
    assert accounts.token_display_prefix(t) == t[:12]
    assert accounts.generate_token() != t
    assert not accounts.looks_like_token("Bearer xyz")


@pytest.mark.parametrize("name", ["ana", "testuser<'&\">", "<script>", "Zoë", "a" * 64])
def test_user_names_accepted(name):
    assert accounts.check_user_name(name) == name


@pytest.mark.parametrize("name", ["", "a b", "cli:root", "x/y", "tab\tx", "a" * 65, "nl\n"])
def test_user_names_refused(name):
    with pytest.raises(UsageError) as err:
        accounts.check_user_name(name)
    assert err.value.code == "NBA311"


def test_login_name_is_clipped_beyond_any_user_name():
    from nbapps.accounts import MAX_USER_NAME, check_user_name, login_name

    assert login_name("ana") == "ana"
    assert login_name("a" * MAX_USER_NAME) == "a" * MAX_USER_NAME
    clipped = login_name("a" * 1_000_000)
    assert clipped == "a" * MAX_USER_NAME + "\u2026"
    with pytest.raises(UsageError):  # can never be the name of a user
        check_user_name(clipped)
    check_user_name("a" * MAX_USER_NAME)
