"""Access modes are data: the shipped file, its validation, and request checks."""

import copy
from decimal import Decimal
from typing import Any

import pytest

from aifactory.domain.access_modes import (
    GpuHourLimits,
    check_request,
    load_access_modes,
    parse_access_modes,
    read_data_file,
)
from aifactory.domain.enums import (
    AccessModeCode as M,
)
from aifactory.domain.enums import (
    AssessmentStep,
    ClockStart,
    OrganisationType,
    SelectionMethod,
)
from aifactory.errors import Invalid


@pytest.fixture
def raw() -> dict[str, Any]:
    return copy.deepcopy(read_data_file("access_modes.yaml"))


def test_shipped_modes_cover_the_five_modes_with_public_rules() -> None:
    modes = load_access_modes()
    assert set(modes) == set(M)
    pg, fl, ls, as_, hc = (
        modes[c] for c in (M.PLAYGROUND, M.FAST_LANE, M.LARGE_SCALE, M.AI_FOR_SCIENCE, M.HOSTING)
    )
    assert pg.selection is SelectionMethod.FIFO and pg.service_level is not None
    assert pg.service_level.working_days == 2
    assert fl.gpu_hours is not None and fl.gpu_hours.max_hours == 50000
    assert fl.service_level is not None and fl.service_level.working_days == 4
    assert (
        ls.gpu_hours is not None and ls.gpu_hours.min_exclusive and ls.gpu_hours.min_hours == 50000
    )
    assert ls.durations_months == (3, 6, 12)
    assert ls.service_level is not None and ls.service_level.counts_from is ClockStart.CUTOFF
    assert ls.has_step(AssessmentStep.PEER_REVIEW) and not pg.has_step(AssessmentStep.PEER_REVIEW)
    assert as_.durations_months == (6,)
    assert hc.gpu_hours is None and not hc.factory_scoped
    assert (
        OrganisationType.STARTUP in fl.org_types and OrganisationType.ACADEMIA not in fl.org_types
    )


def test_reversed_gpu_hour_range_is_refused_with_a_clear_message(raw: dict[str, Any]) -> None:
    raw["modes"][0]["gpu_hours"] = {"min_hours": 100, "max_hours": 10}
    with pytest.raises(Invalid) as info:
        parse_access_modes(raw)
    assert info.value.details[0].field.startswith("modes.0")
    assert "reversed range" in str(info.value)


def test_peer_review_step_without_rules_is_refused(raw: dict[str, Any]) -> None:
    del raw["modes"][2]["peer_review"]
    with pytest.raises(Invalid, match="peer_review rules are required"):
        parse_access_modes(raw)


def test_cutoff_clock_on_fifo_mode_is_refused(raw: dict[str, Any]) -> None:
    raw["modes"][0]["service_level"] = {"working_days": 2, "counts_from": "cutoff"}
    with pytest.raises(Invalid, match="needs selection: cutoff"):
        parse_access_modes(raw)


def test_duplicate_mode_code_is_refused(raw: dict[str, Any]) -> None:
    raw["modes"].append(raw["modes"][0])
    with pytest.raises(Invalid) as info:
        parse_access_modes(raw)
    assert info.value.details[0].rule == "unique"


def test_threshold_outside_scale_is_refused(raw: dict[str, Any]) -> None:
    raw["modes"][2]["peer_review"]["threshold"] = 7
    with pytest.raises(Invalid, match="threshold 7 outside scale"):
        parse_access_modes(raw)


def test_request_within_limits_passes() -> None:
    check_request(load_access_modes()[M.PLAYGROUND], Decimal(500), 2)


def test_request_breaking_several_rules_lists_each() -> None:
    fl = load_access_modes()[M.FAST_LANE]
    with pytest.raises(Invalid) as info:
        check_request(fl, Decimal(60000), 6, systems=2)
    rules = {d.rule for d in info.value.details}
    assert rules == {"gpu_hour_limits", "allowed_durations", "max_systems"}
    assert "60000 GPU-h requested; this mode allows at most 50000" in str(info.value)


@pytest.mark.parametrize("hours", [Decimal(0), Decimal(-5)])
def test_zero_or_negative_hours_are_refused(hours: Decimal) -> None:
    with pytest.raises(Invalid, match="must be positive"):
        check_request(load_access_modes()[M.PLAYGROUND], hours, 1)


def test_large_scale_needs_more_than_fifty_thousand_hours() -> None:
    ls = load_access_modes()[M.LARGE_SCALE]
    with pytest.raises(Invalid, match="more than 50000"):
        check_request(ls, Decimal(50000), 3)
    check_request(ls, Decimal("50000.5"), 3)


def test_call_limits_override_the_mode() -> None:
    as_ = load_access_modes()[M.AI_FOR_SCIENCE]
    with pytest.raises(Invalid, match="at most 1000"):
        check_request(
            as_,
            Decimal(2000),
            6,
            limits=GpuHourLimits(min_hours=Decimal(1), max_hours=Decimal(1000)),
        )


def test_hosting_mode_awards_no_hours() -> None:
    with pytest.raises(Invalid) as info:
        check_request(load_access_modes()[M.HOSTING], Decimal(1), 1)
    assert info.value.details[0].rule == "no_compute"
