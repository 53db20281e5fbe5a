"""Project IDs in EuroHPC style."""

import pytest

from aifactory.domain.enums import AccessModeCode as M
from aifactory.domain.project_ids import (
    ProjectId,
    format_project_id,
    next_project_id,
    parse_project_id,
)
from aifactory.errors import Invalid


def test_format_matches_the_eurohpc_example() -> None:
    assert format_project_id(2026, M.PLAYGROUND, 1, 1) == "EHPC-AIF-2026PG01-0001"
    assert format_project_id(2025, M.LARGE_SCALE, 23, 117) == "EHPC-AIF-2025LS23-0117"


def test_parse_round_trips() -> None:
    pid = parse_project_id("EHPC-AIF-2026AS03-0042")
    assert pid == ProjectId(2026, M.AI_FOR_SCIENCE, 3, 42)
    assert str(pid) == "EHPC-AIF-2026AS03-0042"


@pytest.mark.parametrize(
    "text",
    [
        "EHPC-AIF-2026PG1-0001",
        "EHPC-AIF-26PG01-0001",
        "EHPC-AIF-2026PG01-001",
        "ehpc-aif-2026PG01-0001",
        "",
    ],
)
def test_malformed_ids_are_refused(text: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_project_id(text)
    assert info.value.details[0].rule == "format"


def test_unknown_mode_code_is_refused() -> None:
    with pytest.raises(Invalid) as info:
        parse_project_id("EHPC-AIF-2026XX01-0001")
    assert info.value.details[0].rule == "known_mode"


@pytest.mark.parametrize(("cutoff", "seq"), [(0, 1), (100, 1), (1, 0), (1, 10000)])
def test_out_of_range_parts_are_refused(cutoff: int, seq: int) -> None:
    with pytest.raises(Invalid):
        format_project_id(2026, M.PLAYGROUND, cutoff, seq)


def test_next_id_continues_only_its_own_series() -> None:
    existing = [
        ProjectId(2026, M.PLAYGROUND, 1, 1),
        ProjectId(2026, M.PLAYGROUND, 1, 2),
        ProjectId(2026, M.FAST_LANE, 1, 9),
    ]
    assert str(next_project_id(2026, M.PLAYGROUND, 1, existing)) == "EHPC-AIF-2026PG01-0003"
    assert next_project_id(2026, M.PLAYGROUND, 2, existing).seq == 1
