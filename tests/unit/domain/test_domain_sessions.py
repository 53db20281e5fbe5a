"""Interactive sessions' pure rules: the state machine, the idle clock, durations for people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aifactory.domain.serving import SessionSpec, parse_model
from aifactory.domain.sessions import MOVES, SessionState, check_move, describe, idle_seconds
from aifactory.errors import Conflict, Invalid

S = SessionState
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.STARTING, S.READY), (S.STARTING, S.ENDED), (S.READY, S.STOPPING), (S.STOPPING, S.ENDED)],
)
def test_a_session_moves_forward(old: SessionState, new: SessionState) -> None:
    check_move(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.READY, S.STARTING), (S.STOPPING, S.READY), (S.ENDED, S.STARTING), (S.ENDED, S.ENDED)],
)
def test_a_session_never_moves_back_and_an_ended_one_never_moves(
    old: SessionState, new: SessionState
) -> None:
    with pytest.raises(Conflict, match=f"from {old} to {new}"):
        check_move(old, new)


def test_every_state_has_its_moves_and_ended_is_final() -> None:
    assert set(MOVES) == set(SessionState)
    assert MOVES[S.ENDED] == frozenset()


def test_idle_time_counts_from_the_latest_activity_of_any_source() -> None:
    now = T0 + timedelta(minutes=10)
    assert idle_seconds(now, T0, T0 + timedelta(minutes=9), None) == 60
    assert idle_seconds(now, None) == 0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5.7, "5 s"), (119, "119 s"), (120, "2 min"), (3600, "1 h"), (3900, "1 h 5 min")],
)
def test_durations_read_as_people_say_them(seconds: float, text: str) -> None:
    assert describe(seconds) == text


def test_a_session_spec_takes_durations_and_names_each_broken_rule() -> None:
    spec = parse_model(
        SessionSpec, {"project": "P", "time": "2h", "idle_timeout": "30m"}, "session spec"
    )
    assert (spec.kind, spec.gpus, spec.time, spec.idle_timeout) == ("jupyter", 0, 7200, 1800)
    with pytest.raises(Invalid) as bad:
        parse_model(SessionSpec, {"project": "P", "kind": "vnc", "gpus": 65}, "session spec")
    assert sorted(d.field for d in bad.value.details) == ["gpus", "kind"]
