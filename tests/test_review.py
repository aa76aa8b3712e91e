"""The review state machine, tested from one table of (state, action, who, role) -> outcome."""
from __future__ import annotations

import itertools

import pytest

from nbapps.accounts import Role
from nbapps.errors import Conflict, PermissionDenied
from nbapps.review import (
    Action,
    State,
    after_check,
    allowed_actions,
    can_rollback,
    check_queued,
    transition,
)

SUBMITTER = "ana"
OTHER = "rita"

# outcome: a State, or an error code. "self" = the actor is the submitter, "other" = not.
EXPECTED: dict[tuple[State | None, Action, str, Role], State | str] = {}


def _expected(state: State | None, action: Action, who: str, role: Role) -> State | str:
    """The rules, written independently of review.py's tables."""
    needs_review = action in (Action.APPROVE, Action.REQUEST_CHANGES, Action.REJECT)
    if (needs_review or action is Action.RECHECK) and role not in (Role.REVIEWER, Role.ADMIN):
        return "NBA301"
    if action in (Action.SUBMIT, Action.WITHDRAW) and role is Role.VIEWER:
        return "NBA301"
    if needs_review and who == "self":
        return "NBA304"
    if action is Action.WITHDRAW and who != "self":
        return "NBA301"
    table = {
        # a new submission waits for the gallery's check; people act on the verdict
        (None, Action.SUBMIT): State.VALIDATING,
        (State.VALIDATING, Action.WITHDRAW): State.WITHDRAWN,
        (State.SUBMITTED, Action.APPROVE): State.APPROVED,
        (State.SUBMITTED, Action.REQUEST_CHANGES): State.CHANGES_REQUESTED,
        (State.SUBMITTED, Action.REJECT): State.REJECTED,
        (State.SUBMITTED, Action.WITHDRAW): State.WITHDRAWN,
        (State.SUBMITTED, Action.RECHECK): State.VALIDATING,
        # a failed check: sent back, rejected, withdrawn or checked again; never approved
        (State.FAILED, Action.REQUEST_CHANGES): State.CHANGES_REQUESTED,
        (State.FAILED, Action.REJECT): State.REJECTED,
        (State.FAILED, Action.WITHDRAW): State.WITHDRAWN,
        (State.FAILED, Action.RECHECK): State.VALIDATING,
        (State.CHANGES_REQUESTED, Action.WITHDRAW): State.WITHDRAWN,
    }
    if (state, action) in table:
        return table[(state, action)]
    if needs_review and state is State.VALIDATING:
        return "NBA321"
    if action is Action.APPROVE and state is State.FAILED:
        return "NBA320"
    return "NBA305"


CASES = [
    (state, action, who, role)
    for state, action, who, role in itertools.product(
        [None, *State], list(Action), ["self", "other"], list(Role)
    )
]


@pytest.mark.parametrize(
    "state,action,who,role", CASES,
    ids=[f"{s.value if s else 'new'}-{a.value}-{w}-{r.value}" for s, a, w, r in CASES],
)
def test_transition_table(state, action, who, role):
    actor = SUBMITTER if who == "self" else OTHER
    submitter = SUBMITTER if state is not None or action is not Action.SUBMIT else actor
    expected = _expected(state, action, who if state is not None or action is not Action.SUBMIT
                         else "self", role)
    if isinstance(expected, State):
        assert transition(state, action, actor, role, submitter) is expected
    else:
        with pytest.raises((PermissionDenied, Conflict)) as err:
            transition(state, action, actor, role, submitter)
        assert err.value.code == expected
        assert err.value.http_status in (403, 409)


def test_four_eyes_applies_to_admins_too():
    with pytest.raises(PermissionDenied) as err:
        transition("submitted", "approve", "boss", "admin", "boss")
    assert err.value.code == "NBA304" and err.value.http_status == 403


def test_strings_are_accepted_and_unknown_action_is_a_clear_error():
    assert transition("submitted", "request-changes", "r", "reviewer", "a") is \
        State.CHANGES_REQUESTED
    with pytest.raises(Conflict) as err:
        transition("submitted", "publish", "r", "reviewer", "a")
    assert "unknown review action" in err.value.message


def test_allowed_actions_for_buttons():
    assert allowed_actions("submitted", "rita", "reviewer", "ana") == [
        Action.APPROVE, Action.REQUEST_CHANGES, Action.REJECT, Action.RECHECK]
    assert allowed_actions("submitted", "ana", "reviewer", "ana") == [
        Action.WITHDRAW, Action.RECHECK]
    assert allowed_actions("submitted", "ana", "analyst", "ana") == [Action.WITHDRAW]
    assert allowed_actions("approved", "rita", "admin", "ana") == []
    assert allowed_actions("validating", "rita", "reviewer", "ana") == []
    assert allowed_actions("validating", "ana", "analyst", "ana") == [Action.WITHDRAW]
    assert allowed_actions("failed", "rita", "reviewer", "ana") == [
        Action.REQUEST_CHANGES, Action.REJECT, Action.RECHECK]


def test_decisions_wait_for_the_check_and_a_failed_check_is_never_approved():
    with pytest.raises(Conflict) as err:
        transition("validating", "approve", "rita", "reviewer", "ana")
    assert err.value.code == "NBA321" and err.value.http_status == 409
    with pytest.raises(Conflict) as err:
        transition("failed", "approve", "rita", "admin", "ana")
    assert err.value.code == "NBA320" and err.value.http_status == 409
    with pytest.raises(Conflict) as err:  # already being checked
        transition("validating", "recheck", "rita", "reviewer", "ana")
    assert err.value.code == "NBA305"


def test_system_transitions_of_the_check():
    assert after_check("validating", True) is State.SUBMITTED
    assert after_check("validating", False) is State.FAILED
    # a version that left validating meanwhile (withdrawn), or an approved one whose
    # artifacts were made again, keeps its state
    for state in ("withdrawn", "approved", "submitted", "failed"):
        assert after_check(state, True) is None and after_check(state, False) is None
    assert check_queued("submitted") is State.VALIDATING
    for state in ("approved", "changes_requested", "rejected", "withdrawn", "failed"):
        assert check_queued(state) is None


def test_rollback_roles():
    assert [r.value for r in Role if can_rollback(r)] == ["reviewer", "admin"]
