"""Login sessions in the catalog (both DBs): opened, ended (logout, new password, disabled user,
"end sessions"), expired and deleted; only the id's hash is stored."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from nbapps.catalog.models import LoginSession, utcnow
from nbapps.catalog.sessions import SESSION_TOUCH_INTERVAL
from nbapps.errors import NotFound
from tests.catalog_helpers import add_users


def _user_id(catalog, name: str) -> int:
    return catalog.get_user(name).id


def test_open_look_up_and_logout(catalog):
    add_users(catalog, ana="analyst")
    sid = catalog.create_session(_user_id(catalog, "ana"), days=1)
    assert catalog.session_user(sid).name == "ana"
    with catalog._read() as s:
        stored = s.execute(select(LoginSession.id_hash)).scalars().all()
    assert stored and sid not in stored  # only its hash
    for bad in ["", "x", sid + "x", sid[:-1], "../" * 20, "a" * 500, None, 5]:
        assert catalog.session_user(bad) is None  # type: ignore[arg-type]
    assert catalog.end_session(sid, actor="ana", ip="10.0.0.1") is True
    assert catalog.session_user(sid) is None
    assert catalog.end_session(sid, actor="ana") is False  # already ended: still audited
    logouts = catalog.list_audit(action="logout")
    assert [(e.actor, e.ip) for e in logouts] == [("ana", None), ("ana", "10.0.0.1")]


def test_new_password_disabling_and_end_sessions_end_them_all(catalog):
    catalog.create_user("ana", "analyst", "correct horse battery", actor="t")
    add_users(catalog, bob="viewer")
    ana, bob = _user_id(catalog, "ana"), _user_id(catalog, "bob")
    first = [catalog.create_session(ana, days=1) for _ in range(2)]
    bobs = catalog.create_session(bob, days=1)
    catalog.set_password("ana", "another good one", actor="ana")
    assert [catalog.session_user(s) for s in first] == [None, None]
    assert catalog.session_user(bobs).name == "bob"  # other users untouched

    second = catalog.create_session(ana, days=1)
    catalog.disable_user("ana", actor="adam")
    assert catalog.session_user(second) is None
    catalog.disable_user("ana", actor="adam", disabled=False)
    assert catalog.session_user(second) is None  # re-enabling does not bring it back

    third = [catalog.create_session(ana, days=1) for _ in range(3)]
    assert catalog.count_sessions("ana") == 3
    assert catalog.end_sessions("ana", actor="adam", ip="10.1.1.1") == 3
    assert [catalog.session_user(s) for s in third] == [None, None, None]
    assert catalog.count_sessions("ana") == 0
    ev = catalog.list_audit(action="user.sessions_end")[0]
    assert (ev.actor, ev.target, ev.details) == ("adam", "ana", {"ended": 3})
    with pytest.raises(NotFound):
        catalog.end_sessions("nobody", actor="adam")


def test_expiry_last_seen_and_clean_up(catalog):
    add_users(catalog, ana="analyst")
    ana = _user_id(catalog, "ana")
    live, old, ended = (catalog.create_session(ana, days=1) for _ in range(3))
    past = utcnow() - timedelta(days=2)
    with catalog._write() as s:
        s.execute(update(LoginSession).values(last_seen_at=past))
        s.execute(update(LoginSession).where(LoginSession.id_hash == _hash(old))
                  .values(expires_at=past))
    catalog.end_session(ended, actor="ana")
    with catalog._write() as s:  # ended more than a day ago
        s.execute(update(LoginSession).where(LoginSession.id_hash == _hash(ended))
                  .values(revoked_at=past))
    assert catalog.session_user(old) is None  # expired
    assert catalog.session_user(live).name == "ana"
    with catalog._read() as s:
        seen = s.scalar(select(LoginSession.last_seen_at)
                        .where(LoginSession.id_hash == _hash(live)))
    assert utcnow() - seen < SESSION_TOUCH_INTERVAL  # touched by the look-up
    assert catalog.forget_expired_sessions() == 2
    with catalog._read() as s:
        assert s.scalar(select(func.count(LoginSession.id))) == 1
    assert catalog.session_user(live).name == "ana"


def test_deleting_a_user_row_deletes_its_sessions(catalog):
    """The foreign key cascades (no orphan sessions if a user row is ever removed)."""
    from sqlalchemy import delete

    from nbapps.catalog.models import User

    add_users(catalog, ana="analyst")
    catalog.create_session(_user_id(catalog, "ana"), days=1)
    with catalog._write() as s:
        s.execute(delete(User).where(User.name == "ana"))
    with catalog._read() as s:
        assert s.scalar(select(func.count(LoginSession.id))) == 0


def _hash(sid: str) -> str:
    from nbapps.catalog.sessions import hash_session_id

    return hash_session_id(sid)
