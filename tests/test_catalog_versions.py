"""Submissions, review decisions, four-eyes, concurrency, live/previous/rollback (both DBs)."""
from __future__ import annotations

import threading

import pytest

from nbapps.errors import Conflict, NotFound, PermissionDenied, UsageError
from nbapps.review import State
from tests.catalog_helpers import add_users, publish, sha, submit


@pytest.fixture
def cat(catalog):
    add_users(catalog)
    return catalog


def test_submit_creates_app_version_and_one_audit_event(cat):
    sub = submit(cat, "sales", 1)
    v = sub.version
    assert sub.created and v.state is State.SUBMITTED and v.number == 1
    assert (v.app_slug, v.submitter, v.tags) == ("sales", "ana", ("eu", "sales"))
    assert v.manifest == {"name": "sales", "n": 1} and v.size == 1234
    assert not v.is_live
    events = cat.list_audit(action="submission.create")
    assert len(events) == 1
    assert (events[0].actor, events[0].target, events[0].version_sha256) == (
        "ana", "sales", v.sha256)
    # not in the gallery until approved, but visible with live_only=False
    assert cat.list_apps().total == 0
    assert cat.list_apps(live_only=False).items[0].slug == "sales"


def test_submit_is_idempotent_for_identical_content(cat):
    first = submit(cat, "sales", 1)
    again = submit(cat, "sales", 1)
    assert not again.created and again.version.id == first.version.id
    assert len(cat.list_audit(action="submission.create")) == 1
    second = submit(cat, "sales", 2)
    assert second.created and second.version.number == 2


def test_same_content_for_another_app_is_a_new_version(cat):
    digest = sha("shared")
    a = cat.submit(slug="one", title="One", description="", tags=[], sha256=digest,
                   manifest={}, store_key="k", submitter="ana")
    b = cat.submit(slug="two", title="Two", description="", tags=[], sha256=digest,
                   manifest={}, store_key="k", submitter="ana")
    assert a.created and b.created and a.version.id != b.version.id


def test_submit_permissions(cat):
    with pytest.raises(PermissionDenied) as err:
        submit(cat, "v-app", 1, "vera")
    assert err.value.code == "NBA301"
    submit(cat, "sales", 1, "ana")
    with pytest.raises(PermissionDenied) as err:  # another analyst's app
        submit(cat, "sales", 2, "alf")
    assert "belongs to another author" in err.value.message
    assert submit(cat, "sales", 3, "adam").created  # admins may
    with pytest.raises(PermissionDenied):
        submit(cat, "x", 1, "nobody")
    cat.disable_user("alf", actor="test")
    with pytest.raises(PermissionDenied):
        submit(cat, "alf-app", 1, "alf")


@pytest.mark.parametrize("slug", ["", "Sales", "a b", "../x", "-x", "x-", "a" * 81, "x\n"])
def test_submit_refuses_bad_slug(cat, slug):
    with pytest.raises(UsageError):
        submit(cat, slug, 1)


def test_submit_refuses_bad_hash(cat):
    with pytest.raises(UsageError):
        cat.submit(slug="x", title="X", description="", tags=[], sha256="abc", manifest={},
                   store_key="k", submitter="ana")


def test_approve_makes_live_and_keeps_previous(cat):
    v1 = publish(cat, "sales", 1)
    app = cat.get_app("sales")
    assert app.live.id == v1 and app.previous is None and app.app.live_number == 1
    v2 = submit(cat, "sales", 2, title="Sales v2").version.id
    assert cat.get_app("sales").app.title == "Sales v1"  # live metadata until approved
    out = cat.decide(v2, "rob", "approve", "better")
    assert out.state is State.APPROVED and out.is_live and out.decided_by == "rob"
    assert out.comment == "better"
    app = cat.get_app("sales")
    assert (app.live.id, app.previous.id) == (v2, v1)
    assert app.app.title == "Sales v2"
    assert [v.number for v in app.versions] == [2, 1]
    assert app.live.is_live and app.previous.is_previous_live


def test_rollback_walks_back_through_approved_versions(cat):
    v1 = publish(cat, "sales", 1)
    v2 = publish(cat, "sales", 2)
    rejected = submit(cat, "sales", 3).version.id
    cat.decide(rejected, "rita", "reject", "no")
    v4 = publish(cat, "sales", 4)
    with pytest.raises(PermissionDenied):
        cat.rollback("sales", "ana")
    app = cat.rollback("sales", "rita", "v4 is broken")
    assert (app.live.id, app.previous.id) == (v2, v1)
    assert app.app.title == "Sales v2"
    app = cat.rollback("sales", "adam")
    assert (app.live.id, app.previous) == (v1, None)
    with pytest.raises(Conflict) as err:
        cat.rollback("sales", "adam")
    assert err.value.code == "NBA303"
    events = cat.list_audit(action="app.rollback")
    assert [e.details["from_version_id"] for e in events] == [v2, v4]
    assert cat.list_reviews(v2)[-1].action == "rollback"
    with pytest.raises(NotFound):
        cat.rollback("nope", "adam")


def test_four_eyes(cat):
    own = submit(cat, "rita-app", 1, "rita").version.id
    with pytest.raises(PermissionDenied) as err:
        cat.decide(own, "rita", "approve")
    assert err.value.code == "NBA304"
    own_admin = submit(cat, "adam-app", 1, "adam").version.id
    for action in ("approve", "reject", "request_changes"):
        with pytest.raises(PermissionDenied) as err:
            cat.decide(own_admin, "adam", action)
        assert err.value.code == "NBA304"
    assert cat.get_version(own).state is State.SUBMITTED
    assert cat.decide(own, "rob", "approve").state is State.APPROVED


def test_only_reviewers_decide(cat):
    vid = submit(cat, "sales", 1).version.id
    for who in ("alf", "vera"):
        with pytest.raises(PermissionDenied) as err:
            cat.decide(vid, who, "approve")
        assert err.value.code == "NBA301"
    with pytest.raises(UsageError):
        cat.decide(vid, "rita", "withdraw")


def test_decisions_and_states(cat):
    a = submit(cat, "a", 1).version.id
    b = submit(cat, "b", 1).version.id
    assert cat.decide(a, "rita", "request_changes", "add a legend").state is \
        State.CHANGES_REQUESTED
    assert cat.decide(b, "rita", "reject", "duplicate").state is State.REJECTED
    with pytest.raises(Conflict) as err:  # already decided
        cat.decide(a, "rob", "approve")
    assert err.value.code == "NBA303" and "rita" in err.value.message
    revs = cat.list_reviews(a)
    assert [(r.actor, r.action, r.from_state, r.to_state, r.comment) for r in revs] == [
        ("rita", "request_changes", "submitted", "changes_requested", "add a legend")]
    assert [e.action for e in cat.list_audit(target="a")] == [
        "version.request_changes", "submission.create"]


def test_withdraw(cat):
    a = submit(cat, "a", 1).version.id
    with pytest.raises(PermissionDenied):
        cat.withdraw(a, "rita")
    assert cat.withdraw(a, "ana", "not ready").state is State.WITHDRAWN
    with pytest.raises(Conflict):
        cat.decide(a, "rita", "approve")
    b = submit(cat, "b", 1).version.id
    cat.decide(b, "rita", "request_changes")
    assert cat.withdraw(b, "ana").state is State.WITHDRAWN
    c = publish(cat, "c", 1)
    with pytest.raises(Conflict):
        cat.withdraw(c, "ana")


def test_queue_and_listings(cat):
    a = submit(cat, "a", 1).version.id
    b = submit(cat, "b", 1, "alf").version.id
    c = submit(cat, "c", 1).version.id
    cat.decide(b, "rita", "approve")
    assert [v.id for v in cat.list_queue()] == [a, c]
    assert [v.id for v in cat.list_versions(submitter="ana")] == [c, a]
    assert [v.id for v in cat.list_versions(state="approved")] == [b]
    assert [v.id for v in cat.list_versions(app_slug="c")] == [c]
    assert cat.count_versions(state="submitted") == 2
    assert cat.count_versions(submitter="alf") == 1
    assert cat.find_version("a", sha("a-1")).id == a
    assert cat.find_version("a", sha("zzz")) is None
    with pytest.raises(NotFound):
        cat.get_version(99999)
    assert cat.get_version(a).to_dict(with_manifest=True)["manifest"] == {"name": "a", "n": 1}


def _race(n: int, fn) -> list[object]:
    """Run ``fn(i)`` in n threads released at the same moment; return results/exceptions."""
    barrier = threading.Barrier(n)
    results: list[object] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # noqa: BLE001 - inspected by the caller
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.parametrize("repeat", range(3))
def test_concurrent_decisions_exactly_one_wins(cat, repeat):
    for i in range(4):
        cat.create_user(f"rev{i}", "reviewer", None, actor="test")
    vid = submit(cat, "race", repeat + 1).version.id
    actions = ["approve", "reject", "request_changes", "approve"]
    results = _race(4, lambda i: cat.decide(vid, f"rev{i}", actions[i], f"by rev{i}"))
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1, results
    assert all(isinstance(e, Conflict) and e.code == "NBA303" for e in losses), losses
    winner = wins[0]
    assert cat.get_version(vid).state is winner.state
    assert len(cat.list_reviews(vid)) == 1
    decided = [e for e in cat.list_audit() if e.action.startswith("version.")]
    assert len(decided) == 1 and decided[0].actor == winner.decided_by


def test_concurrent_identical_submissions(cat):
    results = _race(5, lambda i: submit(cat, "dup", 1))
    assert all(not isinstance(r, Exception) for r in results), results
    assert sum(r.created for r in results) == 1
    assert len({r.version.id for r in results}) == 1
    assert cat.count_versions(app_slug="dup") == 1


def test_concurrent_new_versions_get_distinct_numbers(cat):
    results = _race(4, lambda i: submit(cat, "multi", i + 1))
    assert all(not isinstance(r, Exception) for r in results), results
    assert sorted(r.version.number for r in results) == [1, 2, 3, 4]


@pytest.mark.postgres
def test_conditional_update_decides_the_race_postgresql(pg_server, monkeypatch):
    """Both reviewers read "submitted" before either writes: the conditional UPDATE lets exactly
    one through (the other's UPDATE matches no row once the first commits) → NBA303.

    PostgreSQL only: SQLite write transactions start with BEGIN IMMEDIATE, so the second
    reviewer cannot even read before the first commits (covered by the race tests above)."""
    from nbapps import review as review_mod
    from nbapps.catalog import open_catalog

    name, url = pg_server.fresh_database()
    cat = open_catalog(url)
    try:
        add_users(cat)
        vid = submit(cat, "race", 1).version.id
        both_read = threading.Barrier(2, timeout=20)
        original = review_mod.transition

        def transition_then_wait(*args, **kwargs):
            state = original(*args, **kwargs)
            both_read.wait()  # both transactions have read the version as submitted
            return state

        monkeypatch.setattr(review_mod, "transition", transition_then_wait)
        results = _race(2, lambda i: cat.decide(vid, ["rita", "rob"][i],
                                                ["approve", "reject"][i]))
        wins = [r for r in results if not isinstance(r, Exception)]
        losses = [r for r in results if isinstance(r, Exception)]
        assert len(wins) == 1 and len(losses) == 1, results
        assert isinstance(losses[0], Conflict) and losses[0].code == "NBA303"
        assert wins[0].decided_by in losses[0].message
        assert len(cat.list_reviews(vid)) == 1
    finally:
        cat.close()
        pg_server.drop_database(name)
