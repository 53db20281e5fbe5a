"""Interactive sessions: their states, the one transition function, and the idle rule. No I/O.

A session (JupyterLab, or a terminal in it) is a job of its project run as the person who
started it; ``services/interactive.py`` starts it and the serving controller watches it. Its
spec is ``domain.serving.SessionSpec``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from aifactory.errors import Conflict, FieldError


class SessionState(StrEnum):
    """Where a session stands; written by the controller (and ``stop``) from its job."""

    STARTING = "starting"  # its job is pending, queued or running; JupyterLab not answering yet
    READY = "ready"  # JupyterLab answers through the proxy
    STOPPING = "stopping"  # stopped or culled: its job is being cancelled
    ENDED = "ended"  # its job is over; ``reason`` says why


S = SessionState
LIVE = frozenset({S.STARTING, S.READY, S.STOPPING})
MOVES: dict[SessionState, frozenset[SessionState]] = {
    S.STARTING: frozenset({S.READY, S.STOPPING, S.ENDED}),
    S.READY: frozenset({S.STOPPING, S.ENDED}),
    S.STOPPING: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
}


def check_move(current: SessionState, target: SessionState) -> None:
    """Raise ``Conflict`` unless ``current -> target`` is a legal move."""
    if target not in MOVES[current]:
        allowed = ", ".join(sorted(MOVES[current])) or "none (final)"
        msg = f"illegal session transition from {current} to {target} (allowed: {allowed})"
        raise Conflict(msg, [FieldError("state", "legal_transition", msg)])


def idle_seconds(now: datetime, *activity: datetime | None) -> float:
    """Seconds since the latest of ``activity`` (the proxy's last request, JupyterLab's own
    last activity: API calls, kernel messages, terminal input)."""
    seen = [a for a in activity if a is not None]
    return (now - max(seen)).total_seconds() if seen else 0.0


def describe(seconds: float) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``2 h 5 min``."""
    whole = int(seconds)
    if whole < 120:
        return f"{whole} s"
    hours, minutes = divmod(whole // 60, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"
