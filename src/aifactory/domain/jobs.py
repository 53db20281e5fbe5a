"""Job lifecycle: one transition table, one transition function. Pure, no I/O."""

from __future__ import annotations

from enum import StrEnum

from aifactory.errors import Conflict, FieldError


class JobState(StrEnum):
    PENDING = "pending"
    PLACED = "placed"
    SUBMITTED = "submitted"
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    NODE_FAILED = "node_failed"
    PREEMPTED = "preempted"
    #: The scheduler no longer reports the job; accounting settles it, or it fails after a grace.
    LOST = "lost"


J = JobState
TERMINAL = frozenset({J.COMPLETED, J.FAILED, J.CANCELLED, J.TIMED_OUT, J.NODE_FAILED, J.PREEMPTED})
ENDS = frozenset(TERMINAL)
ACTIVE = frozenset({J.PLACED, J.SUBMITTED, J.QUEUED, J.RUNNING, J.LOST})
#: A retried job goes back to pending for a new attempt (managed recovery).
RETRYABLE = frozenset({J.NODE_FAILED, J.TIMED_OUT, J.FAILED, J.PREEMPTED})

MOVES: dict[JobState, frozenset[JobState]] = {
    J.PENDING: frozenset({J.PLACED, J.CANCELLED, J.FAILED}),
    J.PLACED: frozenset({J.SUBMITTED, J.PENDING, J.CANCELLED, J.FAILED}),
    J.SUBMITTED: frozenset({J.QUEUED, J.RUNNING, J.PENDING, J.LOST} | ENDS),
    J.QUEUED: frozenset({J.RUNNING, J.LOST} | ENDS),
    J.RUNNING: frozenset({J.LOST} | ENDS),
    J.LOST: frozenset({J.QUEUED, J.RUNNING} | ENDS),
    J.COMPLETED: frozenset(),
    J.FAILED: frozenset({J.PENDING}),
    J.CANCELLED: frozenset(),
    J.TIMED_OUT: frozenset({J.PENDING}),
    J.NODE_FAILED: frozenset({J.PENDING}),
    J.PREEMPTED: frozenset({J.PENDING}),
}


def check_move(current: JobState, target: JobState) -> None:
    """Raise ``Conflict`` unless ``current -> target`` is a legal move."""
    if target not in MOVES[current]:
        allowed = ", ".join(sorted(MOVES[current])) or "none (final)"
        msg = f"illegal job transition from {current} to {target} (allowed: {allowed})"
        raise Conflict(msg, [FieldError("state", "legal_transition", msg)])
