"""Numbers as people type them (``forms.parse_number``) and the words for the platform's codes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aifactory.domain.access_modes import GpuHourLimits, load_access_modes
from aifactory.domain.enums import (
    AssessmentStep,
    ClockStart,
    CountryStatus,
    OrganisationType,
    ResearchKind,
    SelectionMethod,
)
from aifactory.errors import Invalid
from aifactory.portal.forms import FormErrors, parse_number
from aifactory.portal.labels import LABELS, amount, human, label, limits_text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("12500", "12500"),
        ("12,500", "12500"),
        ("12 500", "12500"),
        ("12\u00a0500", "12500"),
        ("12\u202f500", "12500"),
        ("12500.5", "12500.5"),
        ("1,234.5", "1234.5"),
        ("1,234,567", "1234567"),
        (" -3 ", "-3"),
        ("0.25", "0.25"),
        ("500,000", "500000"),
    ],
)
def test_numbers_are_read_as_people_write_them(text: str, value: str) -> None:
    assert parse_number(text, "gpu_hours") == Decimal(value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("12,5", "not read as a decimal mark"),
        ("1.234,5", "not read as a decimal mark"),
        ("1.2.3", "more than one decimal point"),
        ("12,50", "not read as a decimal mark"),
        ("1,2345", "groups of exactly three digits"),
        ("12 500,000", "one kind of separator"),
        ("lots", "use only digits"),
        ("1e5", "only digits"),
        ("NaN", "only digits"),
        ("", "enter a number"),
    ],
)
def test_ambiguous_or_bad_numbers_are_refused_naming_field_and_rule(text: str, words: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_number(text, "gpu_hours")
    (detail,) = caught.value.details
    assert detail.field == "gpu_hours"
    assert detail.rule in ("number", "required")
    assert words in detail.message


def test_form_errors_keep_every_message_of_a_field_and_read_numbers_with_separators() -> None:
    errors = FormErrors({"gpu_hours", "months"}, {"gpu_hours": "GPU-hours"}, prefix="p1-")
    assert errors.parse("gpu_hours", "12,500", Decimal) == Decimal(12500)
    assert errors.parse("months", "3.5", int) is None
    errors.add("gpu_hours", "too many for this call")
    errors.add("gpu_hours", "more than the partition has")
    assert list(errors.by_field["gpu_hours"]) == [
        "too many for this call",
        "more than the partition has",
    ]
    assert (
        str(errors.by_field["gpu_hours"]) == "too many for this call; more than the partition has"
    )
    assert errors.summary()[0] == ("#f-p1-gpu_hours", "GPU-hours", "too many for this call")
    assert [a for a, _, _ in errors.summary()][-1] == "#f-p1-months"
    with pytest.raises(Invalid) as caught:
        errors.raise_if_any()
    assert len(caught.value.details) == 3


def test_every_code_of_the_access_rules_has_words() -> None:
    kinds = {
        "org_type": OrganisationType,
        "country_status": CountryStatus,
        "research_kind": ResearchKind,
        "selection": SelectionMethod,
        "step": AssessmentStep,
        "counts_from": ClockStart,
    }
    for kind, enum in kinds.items():
        missing = {str(v) for v in enum} - set(LABELS[kind])
        assert not missing, f"{kind}: no words for {missing}"
    for mode in load_access_modes().values():
        words = [human(v, "org_type") for v in mode.org_types] + [
            human(mode.selection, "selection")
        ]
        assert not any("_" in w or w in ("fifo", "sme") for w in words), words
    assert human("fifo", "selection") == "first come, first served"
    assert human("member_state", "country_status") == "EU Member States"
    assert human("something_new", "selection") == "something new"


def test_amounts_and_limits_are_printed_with_separators() -> None:
    assert amount(500000, "GPU-hours") == "500,000 GPU-hours"
    assert amount(Decimal("1234.500")) == "1,234.5"
    assert amount(1, "GPU-hours") == "1 GPU-hour"
    assert limits_text(GpuHourLimits(min_hours=Decimal(1), max_hours=Decimal(5000))) == (
        "1 to 5,000 GPU-hours"
    )
    assert limits_text(GpuHourLimits(min_hours=Decimal(50000), min_exclusive=True)) == (
        "more than 50,000 GPU-hours"
    )
    shown = amount(Decimal("12500.5"))
    assert parse_number(shown, "x") == Decimal("12500.5")  # what the portal prints reads back


def test_the_label_filter_shows_words_for_unambiguous_codes_everywhere() -> None:
    assert label("open_rd") == "open research and development (results are published)"
    assert label("fifo") == "first come, first served"
    assert label("peer_review") == "peer review"  # statuses keep their plain words
