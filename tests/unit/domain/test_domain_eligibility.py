"""Eligibility as code: every rule listed with pass/fail and a reason."""

from datetime import date
from decimal import Decimal as D

import pytest

from aifactory.domain.access_modes import load_access_modes
from aifactory.domain.eligibility import (
    RULES,
    EligibilityInput,
    OrganisationFacts,
    check_eligibility,
)
from aifactory.domain.enums import AccessModeCode as M
from aifactory.domain.enums import CountryStatus, OrganisationType, ResearchKind
from aifactory.domain.sme import EnterpriseFigures, RelatedEnterprise
from aifactory.errors import Invalid

MODES = load_access_modes()
SMALL = EnterpriseFigures(D(12), D(1_500_000), D(900_000))


def startup(**changes: object) -> OrganisationFacts:
    base = {
        "name": "Tiny AI",
        "type": OrganisationType.STARTUP,
        "country_status": CountryStatus.MEMBER_STATE,
        "country": "PT",
        "figures": SMALL,
    }
    return OrganisationFacts(**{**base, **changes})  # type: ignore[arg-type]


def test_eligible_startup_passes_every_rule_and_lists_them_all() -> None:
    result = check_eligibility(
        MODES[M.PLAYGROUND], EligibilityInput(startup(), ResearchKind.COMMERCIAL)
    )
    assert result.eligible
    assert [r.rule for r in result.rules] == list(RULES)
    assert result.failing == ()
    result.raise_if_ineligible()


def test_country_outside_eurohpc_fails_with_reason() -> None:
    facts = EligibilityInput(
        startup(country_status=CountryStatus.OTHER, country="US"), ResearchKind.OPEN_RD
    )
    result = check_eligibility(MODES[M.FAST_LANE], facts)
    assert not result.eligible
    (fail,) = result.failing
    assert fail.rule == "country_status"
    assert "US (other)" in fail.reason and "member_state, participating_state" in fail.reason


def test_participating_state_is_admitted() -> None:
    facts = EligibilityInput(
        startup(country_status=CountryStatus.PARTICIPATING_STATE, country="NO"),
        ResearchKind.OPEN_RD,
    )
    assert check_eligibility(MODES[M.FAST_LANE], facts).eligible


def test_declared_startup_failing_the_sme_definition_is_ineligible() -> None:
    parent = RelatedEnterprise("BigCorp", EnterpriseFigures(D(5000), D("2e9"), D("3e9")), D("0.8"))
    result = check_eligibility(
        MODES[M.FAST_LANE], EligibilityInput(startup(related=(parent,)), ResearchKind.OPEN_RD)
    )
    assert [r.rule for r in result.failing] == ["sme_definition"]
    assert "staff 5012 (>= 250)" in result.failing[0].reason
    assert "BigCorp: linked (80 %)" in result.failing[0].reason


def test_declared_startup_without_figures_fails() -> None:
    result = check_eligibility(
        MODES[M.PLAYGROUND], EligibilityInput(startup(figures=None), ResearchKind.OPEN_RD)
    )
    assert [r.rule for r in result.failing] == ["sme_definition"]


def test_academia_is_not_admitted_to_fast_lane_and_sme_test_does_not_apply() -> None:
    uni = startup(type=OrganisationType.ACADEMIA, figures=None)
    result = check_eligibility(MODES[M.FAST_LANE], EligibilityInput(uni, ResearchKind.OPEN_RD))
    assert [r.rule for r in result.failing] == ["organisation_type"]
    sme_rule = next(r for r in result.rules if r.rule == "sme_definition")
    assert sme_rule.passed and "not applicable" in sme_rule.reason


def test_commercial_work_is_not_admitted_to_ai_for_science() -> None:
    uni = startup(type=OrganisationType.ACADEMIA, figures=None)
    facts = EligibilityInput(uni, ResearchKind.COMMERCIAL, date(2030, 1, 1), date(2027, 6, 30))
    result = check_eligibility(MODES[M.AI_FOR_SCIENCE], facts)
    assert [r.rule for r in result.failing] == ["research_kind"]


@pytest.mark.parametrize(
    ("contract_end", "ok"),
    [(date(2027, 9, 30), True), (date(2027, 9, 29), False), (date(2028, 1, 1), True)],
)
def test_pi_contract_must_run_three_months_past_allocation_end(
    contract_end: date, ok: bool
) -> None:
    uni = startup(type=OrganisationType.ACADEMIA, figures=None)
    facts = EligibilityInput(uni, ResearchKind.OPEN_RD, contract_end, date(2027, 6, 30))
    result = check_eligibility(MODES[M.AI_FOR_SCIENCE], facts)
    assert result.eligible is ok
    rule = next(r for r in result.rules if r.rule == "pi_contract")
    assert "2027-09-30" in rule.reason and "allocation end 2027-06-30" in rule.reason


def test_pi_contract_rule_without_dates_fails() -> None:
    facts = EligibilityInput(startup(), ResearchKind.OPEN_RD)
    result = check_eligibility(MODES[M.LARGE_SCALE], facts)
    assert [r.rule for r in result.failing] == ["pi_contract"]
    assert "PI contract end not given" in result.failing[0].reason


def test_pi_contract_rule_not_required_in_playground() -> None:
    result = check_eligibility(
        MODES[M.PLAYGROUND], EligibilityInput(startup(), ResearchKind.OPEN_RD)
    )
    assert next(r for r in result.rules if r.rule == "pi_contract").reason.startswith(
        "not required"
    )


def test_ineligible_error_lists_every_failing_rule() -> None:
    org = startup(country_status=CountryStatus.OTHER, type=OrganisationType.ACADEMIA, figures=None)
    result = check_eligibility(MODES[M.FAST_LANE], EligibilityInput(org, ResearchKind.OPEN_RD))
    with pytest.raises(Invalid) as info:
        result.raise_if_ineligible()
    assert [d.field for d in info.value.details] == [
        "eligibility.country_status",
        "eligibility.organisation_type",
    ]
    assert "failing rules country_status, organisation_type" in info.value.message
