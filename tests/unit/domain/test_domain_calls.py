"""Default calls data and the call-open / cut-off logic."""

from collections import Counter
from datetime import date
from itertools import pairwise
from typing import Any

import pytest

from aifactory.domain.access_modes import load_access_modes
from aifactory.domain.calls import Call, CutoffSchedule, load_calls, open_period, parse_calls
from aifactory.domain.enums import AccessModeCode as M
from aifactory.errors import Conflict, Invalid

FACTORIES = {"BSC AIF", "IT4LIA", "LUMI AIF", "Meluxina-AI", "MIMER", "HammerHAI", "Pharos"}
MODES = load_access_modes()


def _by_id() -> dict[str, Call]:
    return {c.id: c for c in load_calls()}


def test_every_factory_has_a_call_per_mode_plus_the_hosting_call() -> None:
    calls = load_calls()
    per_factory = Counter((c.factory, c.mode) for c in calls if c.factory)
    assert {f for f, _ in per_factory} == FACTORIES
    assert all(n == 1 for n in per_factory.values())
    assert len(per_factory) == 7 * 4
    hosting = [c for c in calls if c.mode is M.HOSTING]
    assert len(hosting) == 1 and hosting[0].factory is None
    assert date(2025, 2, 1) in hosting[0].all_cutoffs


def test_large_scale_has_two_cutoffs_a_month() -> None:
    ls = _by_id()["bsc-aif-ls"]
    in_2026 = [c for c in ls.all_cutoffs if c.year == 2026]
    assert Counter(c.month for c in in_2026) == dict.fromkeys(range(1, 13), 2)


def test_ai_for_science_cutoffs_are_about_two_months_apart() -> None:
    cutoffs = _by_id()["lumi-aif-as"].all_cutoffs
    gaps = {(b - a).days for a, b in pairwise(cutoffs)}
    assert min(gaps) >= 59 and max(gaps) <= 62


def test_fifo_call_period_is_the_month() -> None:
    pg = _by_id()["it4lia-pg"]
    assert open_period(pg, MODES[M.PLAYGROUND], date(2026, 11, 25)) == (None, 11)


def test_cutoff_call_assigns_the_next_cutoff_and_its_number() -> None:
    ls = _by_id()["mimer-ls"]
    mode = MODES[M.LARGE_SCALE]
    assert open_period(ls, mode, date(2026, 1, 2)) == (date(2026, 1, 15), 2)
    assert open_period(ls, mode, date(2026, 1, 15)) == (date(2026, 1, 15), 2)
    assert open_period(ls, mode, date(2026, 12, 16)) == (date(2027, 1, 1), 1)


def test_submitting_to_a_closed_call_is_a_conflict() -> None:
    ls = _by_id()["pharos-ls"]
    with pytest.raises(Conflict) as info:
        open_period(ls, MODES[M.LARGE_SCALE], date(2028, 1, 1))
    assert info.value.details[0].rule == "call_open"
    with pytest.raises(Conflict, match="closed"):
        open_period(ls, MODES[M.LARGE_SCALE], date(2025, 3, 1))


def test_cutoff_call_with_no_cutoff_left_is_closed() -> None:
    call = Call(
        id="x",
        title="x",
        mode=M.LARGE_SCALE,
        factory="MIMER",
        opens=date(2026, 1, 1),
        cutoffs=(date(2026, 2, 1),),
    )
    with pytest.raises(Conflict, match="no cut-off"):
        open_period(call, MODES[M.LARGE_SCALE], date(2026, 3, 1))


def test_unknown_cutoff_has_no_number() -> None:
    with pytest.raises(Invalid):
        _by_id()["mimer-ls"].cutoff_number(date(2026, 1, 3))


def test_reversed_call_dates_are_refused() -> None:
    data: dict[str, Any] = {
        "calls": [
            {
                "id": "bad",
                "title": "t",
                "mode": "PG",
                "factory": "MIMER",
                "opens": date(2026, 2, 1),
                "closes": date(2026, 1, 1),
            }
        ]
    }
    with pytest.raises(Invalid, match="reversed dates"):
        parse_calls(data, MODES)


def test_reversed_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="reversed dates"):
        CutoffSchedule(start=date(2026, 2, 1), end=date(2026, 1, 1), days_of_month=(1,))


@pytest.mark.parametrize(
    ("call", "rule"),
    [
        ({"id": "a", "title": "t", "mode": "PG", "opens": date(2026, 1, 1)}, "factory_scope"),
        (
            {
                "id": "a",
                "title": "t",
                "mode": "PG",
                "factory": "MIMER",
                "opens": date(2026, 1, 1),
                "cutoffs": [date(2026, 2, 1)],
            },
            "cutoffs_for_selection",
        ),
        (
            {"id": "a", "title": "t", "mode": "LS", "factory": "MIMER", "opens": date(2026, 1, 1)},
            "cutoffs_for_selection",
        ),
        (
            {
                "id": "a",
                "title": "t",
                "mode": "HC",
                "opens": date(2026, 1, 1),
                "cutoffs": [date(2026, 2, 1)],
            },
            "service_level",
        ),
    ],
)
def test_call_inconsistent_with_its_mode_is_refused(call: dict[str, Any], rule: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_calls({"calls": [call]}, MODES)
    assert info.value.details[0].rule == rule


def test_duplicate_call_ids_are_refused() -> None:
    call = {"id": "a", "title": "t", "mode": "PG", "factory": "MIMER", "opens": date(2026, 1, 1)}
    with pytest.raises(Invalid, match="duplicate call id"):
        parse_calls({"calls": [call, call]}, MODES)
