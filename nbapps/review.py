"""The review workflow as pure functions over states (no database, no I/O).

::

    (new) --submit--> validating ==check passed==> submitted   (ready for review)
                                 ==check failed==> failed      (error findings: not approvable)
          submitted --approve---------> approved          (becomes the live version)
                    --request_changes-> changes_requested
                    --reject----------> rejected
                    --withdraw--------> withdrawn         (by its submitter only)
                    --recheck---------> validating        (a reviewer re-queues the check)
          failed    --request_changes / reject / withdraw / recheck (as above; never approve)
          validating --withdraw--> withdrawn
          changes_requested --withdraw--> withdrawn

``==...==>`` are system transitions (:func:`after_check`, :func:`check_queued`): the gallery's
own check run (DESIGN.md decision 7) moves a version, no person does. A version recorded
without a check (by an earlier nbapps, or seeded straight into the catalog) is ``submitted``
until the gallery queues its check (:func:`check_queued`).

Rules, checked in this order by :func:`transition`:

1. the role must hold the permission the action needs (:data:`ACTION_PERMISSION`) → NBA301;
2. a decision (approve / request changes / reject) is never taken by the submitter, whatever
   their role (four-eyes) → NBA304; a withdrawal is only by the submitter → NBA301;
3. the action must be allowed in the current state (:data:`TRANSITIONS`) → NBA305, with two
   clearer codes: a decision on a version still being checked NBA321, approving a version
   whose check failed NBA320.

The catalog applies the returned state with a conditional update (``WHERE state = <old>``) so
that of two reviewers deciding at once exactly one wins.
"""
from __future__ import annotations

from enum import Enum

from .accounts import Permission, Role
from .errors import Conflict, PermissionDenied


class State(str, Enum):
    VALIDATING = "validating"
    FAILED = "failed"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Action(str, Enum):
    SUBMIT = "submit"
    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    REJECT = "reject"
    WITHDRAW = "withdraw"
    RECHECK = "recheck"

    @classmethod
    def parse(cls, value: str | Action) -> Action:
        if isinstance(value, Action):
            return value
        norm = str(value).strip().lower().replace("-", "_")
        try:
            return cls(norm)
        except ValueError:
            names = ", ".join(a.value for a in cls)
            raise Conflict(f"unknown review action {value!r} (one of: {names})",
                           code="NBA305") from None


#: (state or None for a new submission, action) -> new state
TRANSITIONS: dict[tuple[State | None, Action], State] = {
    (None, Action.SUBMIT): State.VALIDATING,
    (State.VALIDATING, Action.WITHDRAW): State.WITHDRAWN,
    (State.SUBMITTED, Action.APPROVE): State.APPROVED,
    (State.SUBMITTED, Action.REQUEST_CHANGES): State.CHANGES_REQUESTED,
    (State.SUBMITTED, Action.REJECT): State.REJECTED,
    (State.SUBMITTED, Action.WITHDRAW): State.WITHDRAWN,
    (State.SUBMITTED, Action.RECHECK): State.VALIDATING,
    (State.FAILED, Action.REQUEST_CHANGES): State.CHANGES_REQUESTED,
    (State.FAILED, Action.REJECT): State.REJECTED,
    (State.FAILED, Action.WITHDRAW): State.WITHDRAWN,
    (State.FAILED, Action.RECHECK): State.VALIDATING,
    (State.CHANGES_REQUESTED, Action.WITHDRAW): State.WITHDRAWN,
}

ACTION_PERMISSION: dict[Action, Permission] = {
    Action.SUBMIT: Permission.SUBMIT,
    Action.APPROVE: Permission.REVIEW,
    Action.REQUEST_CHANGES: Permission.REVIEW,
    Action.REJECT: Permission.REVIEW,
    Action.WITHDRAW: Permission.SUBMIT,
    Action.RECHECK: Permission.REVIEW,
}

#: actions that are review decisions (four-eyes applies)
DECISIONS = frozenset({Action.APPROVE, Action.REQUEST_CHANGES, Action.REJECT})
#: states after which nothing more can happen to a version
FINAL_STATES = frozenset({State.APPROVED, State.REJECTED, State.WITHDRAWN})


def transition(
    state: State | str | None,
    action: Action | str,
    actor_name: str,
    actor_role: Role | str,
    submitter_name: str | None,
) -> State:
    """Return the state after ``actor`` does ``action`` on a version in ``state``.

    ``state`` is None for a new submission (then ``submitter_name`` is the actor). Raises
    :class:`PermissionDenied` (NBA301 role, NBA304 four-eyes) or :class:`Conflict` (NBA305).
    """
    act = Action.parse(action)
    role = Role.parse(actor_role)
    current = State(state) if state is not None else None
    needed = ACTION_PERMISSION[act]
    if not role.can(needed):
        raise PermissionDenied(
            f"role {role.value!r} cannot {act.value.replace('_', ' ')}", code="NBA301"
        )
    if act in DECISIONS and submitter_name is not None and actor_name == submitter_name:
        raise PermissionDenied(
            f"{actor_name} submitted this version and cannot decide on it", code="NBA304"
        )
    if act is Action.WITHDRAW and actor_name != submitter_name:
        raise PermissionDenied("only the submitter can withdraw a submission", code="NBA301")
    new = TRANSITIONS.get((current, act))
    if new is None and act in DECISIONS and current is State.VALIDATING:
        raise Conflict("the gallery is still checking this version; decide when its check "
                       "has finished", code="NBA321")
    if new is None and act is Action.APPROVE and current is State.FAILED:
        raise Conflict("the gallery's check of this version failed, so it cannot be approved; "
                       "request changes, reject it or re-queue the check", code="NBA320")
    if new is None:
        where = current.value if current else "new"
        raise Conflict(
            f"cannot {act.value.replace('_', ' ')} a version that is {where.replace('_', ' ')}",
            code="NBA305",
        )
    return new


def allowed_actions(
    state: State | str | None, actor_name: str, actor_role: Role | str, submitter_name: str | None
) -> list[Action]:
    """Actions ``actor`` may take now (for showing buttons); same rules as :func:`transition`."""
    out = []
    for act in Action:
        try:
            transition(state, act, actor_name, actor_role, submitter_name)
        except (PermissionDenied, Conflict):
            continue
        out.append(act)
    return out


def after_check(state: State | str, passed: bool) -> State | None:
    """The state a finished check run moves a version to (system transition), or None when
    the version is not waiting for one (withdrawn meanwhile, or an approved version whose
    artifacts were made again)."""
    if State(state) is not State.VALIDATING:
        return None
    return State.SUBMITTED if passed else State.FAILED


def check_queued(state: State | str) -> State | None:
    """The state a version takes when the gallery queues a check for it without anyone asking
    (a version recorded without one): a ``submitted`` one waits for the verdict again; the
    others keep their state (the check only derives what pages show)."""
    return State.VALIDATING if State(state) is State.SUBMITTED else None


def can_rollback(actor_role: Role | str) -> bool:
    """Whether the role may put an app's previous live version back (reviewer, admin)."""
    return Role.parse(actor_role).can(Permission.ROLLBACK)
