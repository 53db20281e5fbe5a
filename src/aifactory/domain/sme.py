"""The EU SME definition (Recommendation 2003/361/EC), following the Commission's user guide.

An enterprise is an SME when its staff headcount (annual work units) is below 250 and either its
annual turnover is at most EUR 50 million or its balance sheet total at most EUR 43 million. The
figures are those of the enterprise **plus** its related enterprises:

* autonomous (share held < 25 %): not counted;
* partner (25 % to 50 % inclusive): counted in proportion to the share;
* linked (> 50 %): counted at 100 %.

The share is the higher of the capital and voting-rights shares, whichever direction the holding
runs (upstream or downstream). An enterprise 25 % or more controlled by public bodies is not an
SME, whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from aifactory.errors import Invalid

STAFF_LIMIT = Decimal(250)
TURNOVER_LIMIT_EUR = Decimal(50_000_000)
BALANCE_SHEET_LIMIT_EUR = Decimal(43_000_000)
PARTNER_MIN_SHARE = Decimal("0.25")
LINKED_ABOVE_SHARE = Decimal("0.50")
PUBLIC_CONTROL_SHARE = Decimal("0.25")


class Relation(StrEnum):
    """How a related enterprise counts towards the SME figures."""

    AUTONOMOUS = "autonomous"
    PARTNER = "partner"
    LINKED = "linked"


def _check_share(name: str, share: Decimal) -> None:
    if not Decimal(0) <= share <= Decimal(1):
        raise Invalid.field(name, "share_range", f"share {share} must be between 0 and 1")


@dataclass(frozen=True)
class EnterpriseFigures:
    """Headcount (annual work units) and the last approved annual accounts, in euro."""

    staff: Decimal
    turnover_eur: Decimal
    balance_sheet_eur: Decimal

    def __post_init__(self) -> None:
        for name in ("staff", "turnover_eur", "balance_sheet_eur"):
            value = getattr(self, name)
            if value < 0:
                raise Invalid.field(name, "non_negative", f"{name} {value} must not be negative")


@dataclass(frozen=True)
class RelatedEnterprise:
    """A partner or linked enterprise and the share (0-1) held between it and the applicant."""

    name: str
    figures: EnterpriseFigures
    share: Decimal

    def __post_init__(self) -> None:
        _check_share(f"related.{self.name}.share", self.share)

    @property
    def relation(self) -> Relation:
        """Autonomous, partner or linked, from the share."""
        return classify_relation(self.share)


@dataclass(frozen=True)
class SmeAssessment:
    """Aggregated figures, the verdict and a reason that quotes the numbers."""

    staff: Decimal
    turnover_eur: Decimal
    balance_sheet_eur: Decimal
    is_sme: bool
    reason: str
    contributions: tuple[str, ...] = ()


def classify_relation(share: Decimal) -> Relation:
    """Classify a holding: < 25 % autonomous, 25-50 % partner, > 50 % linked."""
    if share > LINKED_ABOVE_SHARE:
        return Relation.LINKED
    return Relation.PARTNER if share >= PARTNER_MIN_SHARE else Relation.AUTONOMOUS


# How much of a related enterprise's figures count, as a function of the share held.
_WEIGHT: Mapping[Relation, Callable[[Decimal], Decimal]] = {
    Relation.AUTONOMOUS: lambda share: Decimal(0),
    Relation.PARTNER: lambda share: share,
    Relation.LINKED: lambda share: Decimal(1),
}


def _weight(rel: RelatedEnterprise) -> Decimal:
    return _WEIGHT[rel.relation](rel.share)


def eur(value: Decimal) -> str:
    """Format euros with thousands separators, e.g. ``EUR 43,000,000``."""
    return f"EUR {value:,.0f}"


def _figures_line(staff: Decimal, turnover: Decimal, balance: Decimal) -> str:
    staff_cmp = "<" if staff < STAFF_LIMIT else ">="
    turn_cmp = "<=" if turnover <= TURNOVER_LIMIT_EUR else ">"
    bal_cmp = "<=" if balance <= BALANCE_SHEET_LIMIT_EUR else ">"
    return (
        f"staff {staff.normalize():f} ({staff_cmp} {STAFF_LIMIT}), "
        f"turnover {eur(turnover)} ({turn_cmp} {eur(TURNOVER_LIMIT_EUR)}), "
        f"balance sheet {eur(balance)} ({bal_cmp} {eur(BALANCE_SHEET_LIMIT_EUR)})"
    )


def assess_sme(
    own: EnterpriseFigures,
    related: Sequence[RelatedEnterprise] = (),
    public_bodies_share: Decimal = Decimal(0),
) -> SmeAssessment:
    """Apply the EU SME definition to an enterprise and its partner and linked enterprises.

    Args:
        own: The applicant's own figures.
        related: Enterprises holding, or held by, the applicant, with the share (0-1).
        public_bodies_share: Share of capital or voting rights controlled by public bodies.

    Returns:
        The aggregated figures, whether the enterprise is an SME and a reason with the numbers.

    Raises:
        Invalid: A share outside 0-1.
    """
    _check_share("public_bodies_share", public_bodies_share)
    staff, turnover, balance = own.staff, own.turnover_eur, own.balance_sheet_eur
    notes: list[str] = []
    for rel in related:
        w = _weight(rel)
        staff += rel.figures.staff * w
        turnover += rel.figures.turnover_eur * w
        balance += rel.figures.balance_sheet_eur * w
        pct = f"{(rel.share * 100).normalize():f} %"
        notes.append(f"{rel.name}: {rel.relation} ({pct}), counted at {(w * 100).normalize():f} %")
    figures = _figures_line(staff, turnover, balance)
    if public_bodies_share >= PUBLIC_CONTROL_SHARE:
        pct = f"{(public_bodies_share * 100).normalize():f} %"
        reason = f"not an SME: {pct} controlled by public bodies (limit < 25 %); {figures}"
        return SmeAssessment(staff, turnover, balance, False, reason, tuple(notes))
    financial_ok = turnover <= TURNOVER_LIMIT_EUR or balance <= BALANCE_SHEET_LIMIT_EUR
    is_sme = staff < STAFF_LIMIT and financial_ok
    verdict = "SME" if is_sme else "not an SME"
    scope = "with partner and linked enterprises" if notes else "own figures"
    reason = f"{verdict} ({scope}): {figures}"
    return SmeAssessment(staff, turnover, balance, is_sme, reason, tuple(notes))
