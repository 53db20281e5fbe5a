"""The size classes of the EU SME definition (Recommendation 2003/361/EC, Article 2).

``assess_sme`` says whether an enterprise, counted with its partner and linked enterprises, is
an SME; this module says which class: micro, small or medium. Each class needs fewer staff than
its ceiling and either the turnover or the balance sheet total within its limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from aifactory.domain.sme import SmeAssessment, eur


class SizeClass(StrEnum):
    MICRO = "micro"
    SMALL = "small"
    MEDIUM = "medium"
    NOT_SME = "not_sme"


@dataclass(frozen=True)
class Ceiling:
    size: SizeClass
    staff_below: Decimal
    turnover_eur: Decimal
    balance_sheet_eur: Decimal


#: Smallest class first: the first ceiling an enterprise fits under is its class.
CEILINGS = (
    Ceiling(SizeClass.MICRO, Decimal(10), Decimal(2_000_000), Decimal(2_000_000)),
    Ceiling(SizeClass.SMALL, Decimal(50), Decimal(10_000_000), Decimal(10_000_000)),
    Ceiling(SizeClass.MEDIUM, Decimal(250), Decimal(50_000_000), Decimal(43_000_000)),
)


def size_class(assessment: SmeAssessment) -> tuple[SizeClass, str]:
    """The class of an assessed enterprise and why (the ceiling it fits under, or the verdict)."""
    if not assessment.is_sme:
        return SizeClass.NOT_SME, assessment.reason
    for c in CEILINGS:
        money = (
            assessment.turnover_eur <= c.turnover_eur
            or assessment.balance_sheet_eur <= c.balance_sheet_eur
        )
        if assessment.staff < c.staff_below and money:
            why = (
                f"{c.size} enterprise: staff below {c.staff_below} and turnover or balance sheet "
                f"at most {eur(c.turnover_eur)} / {eur(c.balance_sheet_eur)}; {assessment.reason}"
            )
            return c.size, why
    return SizeClass.MEDIUM, assessment.reason  # is_sme implies the medium ceiling holds
