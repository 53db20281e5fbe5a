"""Which sections each access mode requires, named all at once with field and rule."""

from __future__ import annotations

import pytest

from aifactory.domain.enums import AccessModeCode
from aifactory.domain.proposal_sections import (
    ETHICS_QUESTIONS,
    REQUIRED,
    Sections,
    check_complete,
    missing,
)
from aifactory.errors import Invalid
from aifactory.testing.proposals import SECTIONS


def _fields(mode: str, sections: Sections, rows: int = 1, hours: bool = True) -> list[str]:
    return [e.field for e in missing(mode, sections, rows, hours)]


def test_playground_is_light_and_the_full_modes_ask_for_everything() -> None:
    empty = Sections()
    assert _fields("PG", empty) == []
    assert _fields("PG", empty, rows=0, hours=False) == ["gpu_hours"]
    assert _fields("HC", empty, rows=0, hours=False) == []
    questions = [f"ethics.{q}" for q in ETHICS_QUESTIONS]
    for mode in ("FL", "LS", "AS"):
        parts = [p for p in REQUIRED[AccessModeCode(mode)] if p != "ethics"]
        assert _fields(mode, empty, rows=0) == parts + questions  # each question named
        assert "resources" in _fields(mode, empty, rows=0)  # a total alone is not enough
    assert _fields("LS", Sections.model_validate(SECTIONS)) == []


def test_every_missing_part_is_named_at_once_with_its_rule_and_words() -> None:
    partial = Sections.model_validate(
        {"team": SECTIONS["team"], "technical": {"method": "transformer"}}
    )
    with pytest.raises(Invalid) as caught:
        check_complete("FL", partial, 1, True)
    details = caught.value.details
    assert {d.rule for d in details} == {"required_for_mode"}
    assert [d.field for d in details] == [
        "technical.software",
        "technical.scaling",
        "technical.workflow",
        "data.datasets",
        "data.sources",
        "data.licences",
        "data.personal_data",
        *(f"ethics.{q}" for q in ETHICS_QUESTIONS),
    ]
    assert details[1].message.startswith("Scaling evidence: show how the code scales")


def test_a_yes_needs_its_explanation_in_every_mode() -> None:
    data = {**SECTIONS["data"], "personal_data": True}
    ethics = {q: {"answer": q == "dual_use"} for q in ETHICS_QUESTIONS}
    sections = Sections.model_validate({**SECTIONS, "data": data, "ethics": ethics})
    got = [(e.field, e.rule) for e in missing("PG", sections, 1, True)]
    assert got == [
        ("data.personal_data_handling", "explain_yes"),
        ("ethics.dual_use", "explain_yes"),
    ]
