"""SME size classes at their ceilings, and numbers read as people write them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from aifactory.domain.amounts import percent, whole_number
from aifactory.domain.sme import EnterpriseFigures, RelatedEnterprise, assess_sme
from aifactory.domain.sme_classes import SizeClass, size_class
from aifactory.errors import Invalid

M = 1_000_000


@pytest.mark.parametrize(
    ("staff", "turnover", "balance", "expected"),
    [
        (9, 2 * M, 50 * M, SizeClass.MICRO),  # turnover at the micro limit is enough
        (9, 3 * M, 2 * M, SizeClass.MICRO),  # ... or the balance sheet
        (10, 1 * M, 1 * M, SizeClass.SMALL),  # 10 staff is not below 10
        (49, 10 * M, 99 * M, SizeClass.SMALL),
        (50, 1 * M, 1 * M, SizeClass.MEDIUM),
        (249, 60 * M, 43 * M, SizeClass.MEDIUM),
        (249, 60 * M, 44 * M, SizeClass.NOT_SME),
        (250, 1 * M, 1 * M, SizeClass.NOT_SME),
    ],
)
def test_size_class_at_each_ceiling(staff: int, turnover: int, balance: int, expected: str) -> None:
    own = EnterpriseFigures(Decimal(staff), Decimal(turnover), Decimal(balance))
    size, reason = size_class(assess_sme(own))
    assert size == expected
    assert reason


def test_a_linked_enterprise_moves_the_class() -> None:
    own = EnterpriseFigures(Decimal(8), Decimal(M), Decimal(M))
    parent = RelatedEnterprise(
        "P", EnterpriseFigures(Decimal(45), Decimal(M), Decimal(M)), Decimal("0.6")
    )
    assert size_class(assess_sme(own))[0] == SizeClass.MICRO
    assert size_class(assess_sme(own, [parent]))[0] == SizeClass.MEDIUM  # 53 staff


@pytest.mark.parametrize(
    ("text", "value"),
    [("12,500", 12500), ("1 200 000", 1200000), ("€ 2'000'000", 2000000), ("7\u202f000", 7000)],
)
def test_whole_numbers_as_written(text: str, value: int) -> None:
    assert whole_number(text) == value


@pytest.mark.parametrize("text", ["12.5", "-3", "twelve", "", "1e6"])
def test_what_is_not_a_whole_number(text: str) -> None:
    with pytest.raises(Invalid):
        whole_number(text)


def test_percentages() -> None:
    assert percent("60 %") == Decimal("0.6")
    assert percent("33,5") == Decimal("0.335")
    for bad in ("160", "-1", "NaN", "x"):
        with pytest.raises(Invalid):
            percent(bad)
