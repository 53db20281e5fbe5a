"""The EU SME definition with partner and linked enterprises."""

from decimal import Decimal as D

import pytest

from aifactory.domain.sme import (
    EnterpriseFigures,
    RelatedEnterprise,
    Relation,
    assess_sme,
    classify_relation,
)
from aifactory.errors import Invalid


def figures(staff: int, turnover_m: str, balance_m: str) -> EnterpriseFigures:
    return EnterpriseFigures(D(staff), D(turnover_m) * 1_000_000, D(balance_m) * 1_000_000)


@pytest.mark.parametrize(
    ("share", "relation"),
    [
        ("0.2499", Relation.AUTONOMOUS),
        ("0.25", Relation.PARTNER),
        ("0.50", Relation.PARTNER),
        ("0.5001", Relation.LINKED),
        ("1", Relation.LINKED),
    ],
)
def test_share_classifies_the_relation(share: str, relation: Relation) -> None:
    assert classify_relation(D(share)) is relation


def test_small_autonomous_enterprise_is_an_sme() -> None:
    result = assess_sme(figures(40, "5", "3"))
    assert result.is_sme
    assert "staff 40 (< 250)" in result.reason


def test_staff_of_250_is_not_an_sme() -> None:
    assert not assess_sme(figures(250, "1", "1")).is_sme


def test_either_financial_ceiling_suffices() -> None:
    assert assess_sme(figures(100, "80", "43")).is_sme  # turnover over, balance sheet at ceiling
    assert assess_sme(figures(100, "50", "90")).is_sme  # balance over, turnover at ceiling
    result = assess_sme(figures(100, "50.000001", "43.000001"))
    assert not result.is_sme
    assert "turnover EUR 50,000,001 (> EUR 50,000,000)" in result.reason


def test_partner_counts_in_proportion_and_linked_in_full() -> None:
    own = figures(150, "20", "10")
    partner = RelatedEnterprise("Partner GmbH", figures(100, "10", "10"), D("0.30"))
    linked = RelatedEnterprise("Parent SA", figures(120, "10", "10"), D("0.60"))
    with_partner = assess_sme(own, [partner])
    assert with_partner.staff == D(180) and with_partner.turnover_eur == D(23_000_000)
    assert with_partner.is_sme
    both = assess_sme(own, [partner, linked])
    assert both.staff == D(300)
    assert not both.is_sme
    assert "Parent SA: linked (60 %), counted at 100 %" in both.contributions


def test_autonomous_holding_is_not_counted() -> None:
    small_stake = RelatedEnterprise("Investor", figures(10_000, "900", "900"), D("0.20"))
    assert assess_sme(figures(10, "1", "1"), [small_stake]).is_sme


def test_public_body_control_of_25_percent_excludes_sme_status() -> None:
    result = assess_sme(figures(10, "1", "1"), public_bodies_share=D("0.25"))
    assert not result.is_sme
    assert "public bodies" in result.reason


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(Invalid):
        RelatedEnterprise("X", figures(1, "1", "1"), D("1.5"))
    with pytest.raises(Invalid):
        EnterpriseFigures(D(-1), D(0), D(0))
