"""Entitlement rules: where a proposal may ask for hours, and the allocations an award makes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aifactory.domain.access_modes import EntitlementLimits, load_access_modes
from aifactory.domain.entitlements import Ask, Grant, Scope, grants, spread_errors
from aifactory.domain.enums import AccessModeCode as M

HOME = (1, "LUMI AIF")
LUMI = Ask("LUMI-AI/gpu", 10, 100, 1, "LUMI AIF")
MELUXINA = Ask("MeluXina-AI/gpu", 20, 200, 2, "Meluxina-AI")
MIMER = Ask("MIMER/gpu", 30, 300, 3, "MIMER")
FED = Ask("federation")


def _rules(limits: EntitlementLimits, *asks: Ask) -> set[tuple[str, str]]:
    return {(e.field, e.rule) for e in spread_errors(limits, asks, "c", HOME)}


def test_one_system_modes_take_rows_at_their_own_factory_only() -> None:
    modes = load_access_modes()
    for code in (M.PLAYGROUND, M.FAST_LANE):
        limits = modes[code].entitlements
        assert _rules(limits, LUMI) == set()
        assert _rules(limits, LUMI, MELUXINA) == {
            ("resources.1.partition", "call_factory"),
            ("resources", "max_systems"),
            ("resources", "max_factories"),
        }
        assert _rules(limits, LUMI, FED) == {("resources.1.partition", "federation_allocation")}


def test_several_system_modes_take_several_factories_and_the_federation() -> None:
    modes = load_access_modes()
    for code in (M.LARGE_SCALE, M.AI_FOR_SCIENCE):
        limits = modes[code].entitlements
        assert limits.federation and limits.max_systems > 1
        assert _rules(limits, LUMI, MELUXINA, MIMER, FED) == set()
        assert _rules(limits, FED) == set()


def test_limits_count_systems_and_factories_apart() -> None:
    limits = EntitlementLimits(max_systems=2, max_factories=1)
    other_partition = Ask("LUMI-AI/small", 11, 100, 1, "LUMI AIF")
    assert _rules(limits, LUMI, other_partition) == set()  # one system, two partitions
    assert _rules(limits, LUMI, MELUXINA) == {
        ("resources.1.partition", "call_factory"),
        ("resources", "max_factories"),
    }
    with pytest.raises(ValidationError, match="exceeds max_systems"):
        EntitlementLimits(max_systems=1, max_factories=2)


def test_grants_follow_the_rows_when_the_assessment_changes_nothing() -> None:
    assert grants([(10, 60_000), (None, 5_000)]) == [Grant(10, 60_000), Grant(None, 5_000)]
    assert [g.scope for g in grants([(10, 1), (None, 1)])] == [Scope.PARTITION, Scope.FEDERATION]


def test_an_assessed_total_is_shared_in_proportion_to_the_milli_hour() -> None:
    got = grants([(10, 1), (20, 1), (30, 1)], assessed_milli=100)
    assert [g.milli for g in got] == [34, 33, 33]  # ties go to the earlier row
    assert grants([(10, 3), (20, 1)], assessed_milli=2) == [Grant(10, 2)]  # 1.5, 0.5: 2, 0


def test_an_assessed_partition_replaces_or_merges_into_the_first_partition_row() -> None:
    rows = [(None, 5), (10, 60), (20, 40)]
    assert grants(rows, assessed_partition=30) == [Grant(None, 5), Grant(30, 60), Grant(20, 40)]
    assert grants(rows, assessed_partition=20) == [Grant(None, 5), Grant(20, 100)]
    assert grants(rows, assessed_partition=10) == [Grant(None, 5), Grant(10, 60), Grant(20, 40)]
    assert grants([(None, 5)], assessed_partition=10) == [Grant(None, 5)]


@given(
    st.lists(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=8),
    st.integers(min_value=1, max_value=10**10),
)
def test_shared_grants_sum_exactly_to_the_assessed_total(rows: list[int], target: int) -> None:
    got = grants([(i, m) for i, m in enumerate(rows)], assessed_milli=target)
    assert sum(g.milli for g in got) == target
    total = sum(rows)
    for g in got:  # each within one milli-hour of its exact share
        assert abs(g.milli - rows[g.partition_id or 0] * target / total) < 1
