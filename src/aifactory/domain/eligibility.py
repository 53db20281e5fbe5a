"""Eligibility as code: every rule of a mode checked, each with pass/fail and a reason.

Rules (ids are stable and appear in API errors):

* ``country_status``: the organisation is established in a country whose status the mode admits;
* ``organisation_type``: the declared organisation type is admitted by the mode;
* ``sme_definition``: an organisation declared start-up or SME meets the EU SME definition;
* ``research_kind``: open R&D or commercial use as the mode admits;
* ``pi_contract``: where the mode requires it, the PI's contract runs at least
  ``pi_contract_months`` past the allocation end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from aifactory.domain.access_modes import AccessMode
from aifactory.domain.clock import add_months
from aifactory.domain.enums import AccessModeCode, CountryStatus, OrganisationType, ResearchKind
from aifactory.domain.sme import EnterpriseFigures, RelatedEnterprise, assess_sme
from aifactory.errors import FieldError, Invalid

SME_TYPES = frozenset({OrganisationType.STARTUP, OrganisationType.SME})


@dataclass(frozen=True)
class OrganisationFacts:
    """What eligibility needs to know about the applicant organisation.

    Attributes:
        figures: Own staff, turnover and balance sheet; needed when declared start-up or SME.
        related: Partner and linked enterprises with the share held.
        public_bodies_share: Share (0-1) of capital or voting rights held by public bodies.
    """

    name: str
    type: OrganisationType
    country_status: CountryStatus
    country: str = ""
    figures: EnterpriseFigures | None = None
    related: tuple[RelatedEnterprise, ...] = ()
    public_bodies_share: Decimal = Decimal(0)


@dataclass(frozen=True)
class EligibilityInput:
    """Everything one eligibility check looks at besides the mode's rules."""

    organisation: OrganisationFacts
    research_kind: ResearchKind
    pi_contract_end: date | None = None
    allocation_end: date | None = None


@dataclass(frozen=True)
class RuleResult:
    """One rule's outcome; ``reason`` quotes the facts and numbers behind it."""

    rule: str
    passed: bool
    reason: str

    def as_dict(self) -> dict[str, str | bool]:
        """Plain form for JSON and tables."""
        return {"rule": self.rule, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True)
class EligibilityResult:
    """Every rule of a mode, in a stable order, with the overall verdict."""

    mode: AccessModeCode
    rules: tuple[RuleResult, ...]

    @property
    def eligible(self) -> bool:
        """True when every rule passed."""
        return all(r.passed for r in self.rules)

    @property
    def failing(self) -> tuple[RuleResult, ...]:
        """The rules that failed."""
        return tuple(r for r in self.rules if not r.passed)

    def to_error(self) -> Invalid:
        """An ``Invalid`` listing each failing rule as ``eligibility.<rule>``."""
        details = [FieldError(f"eligibility.{r.rule}", r.rule, r.reason) for r in self.failing]
        names = ", ".join(r.rule for r in self.failing)
        return Invalid(f"not eligible for mode {self.mode}: failing rules {names}", details)

    def raise_if_ineligible(self) -> None:
        """Raise the ``to_error`` error unless eligible (use before submitting).

        Raises:
            Invalid: One entry per failing rule.
        """
        if not self.eligible:
            raise self.to_error()


def _names(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def _country_status(mode: AccessMode, facts: EligibilityInput) -> RuleResult:
    org = facts.organisation
    where = f"{org.name} is established in {org.country or 'a country'} ({org.country_status})"
    ok = org.country_status in mode.country_statuses
    verdict = "admitted" if ok else "not admitted"
    reason = f"{where}; {verdict}: mode {mode.code} admits {_names(mode.country_statuses)}"
    return RuleResult("country_status", ok, reason)


def _organisation_type(mode: AccessMode, facts: EligibilityInput) -> RuleResult:
    org = facts.organisation
    ok = org.type in mode.org_types
    verdict = "admitted" if ok else "not admitted"
    reason = (
        f"{org.name} is {org.type}; {verdict}: mode {mode.code} admits {_names(mode.org_types)}"
    )
    return RuleResult("organisation_type", ok, reason)


def _sme_definition(mode: AccessMode, facts: EligibilityInput) -> RuleResult:
    org = facts.organisation
    if org.type not in SME_TYPES:
        return RuleResult("sme_definition", True, f"not applicable: {org.name} is {org.type}")
    if org.figures is None:
        reason = f"{org.name} is declared {org.type} but no staff/turnover/balance sheet given"
        return RuleResult("sme_definition", False, reason)
    result = assess_sme(org.figures, org.related, org.public_bodies_share)
    extra = f" [{'; '.join(result.contributions)}]" if result.contributions else ""
    return RuleResult("sme_definition", result.is_sme, f"{org.name}: {result.reason}{extra}")


def _research_kind(mode: AccessMode, facts: EligibilityInput) -> RuleResult:
    ok = facts.research_kind in mode.research_kinds
    verdict = "admitted" if ok else "not admitted"
    allowed = _names(mode.research_kinds)
    reason = f"{facts.research_kind} work; {verdict}: mode {mode.code} admits {allowed}"
    return RuleResult("research_kind", ok, reason)


def _pi_contract(mode: AccessMode, facts: EligibilityInput) -> RuleResult:
    if not mode.pi_contract_rule:
        return RuleResult("pi_contract", True, f"not required by mode {mode.code}")
    months = mode.pi_contract_months
    if facts.pi_contract_end is None or facts.allocation_end is None:
        missing = "PI contract end" if facts.pi_contract_end is None else "allocation end"
        reason = f"mode {mode.code} needs the PI contract to run {months} months past the "
        return RuleResult("pi_contract", False, reason + f"allocation end; {missing} not given")
    needed = add_months(facts.allocation_end, months)
    ok = facts.pi_contract_end >= needed
    cmp = ">=" if ok else "<"
    reason = (
        f"PI contract ends {facts.pi_contract_end} {cmp} {needed} "
        f"(allocation end {facts.allocation_end} + {months} months)"
    )
    return RuleResult("pi_contract", ok, reason)


RULES: Mapping[str, Callable[[AccessMode, EligibilityInput], RuleResult]] = {
    "country_status": _country_status,
    "organisation_type": _organisation_type,
    "sme_definition": _sme_definition,
    "research_kind": _research_kind,
    "pi_contract": _pi_contract,
}


def check_eligibility(mode: AccessMode, facts: EligibilityInput) -> EligibilityResult:
    """Check every eligibility rule of ``mode``; never stops at the first failure.

    Args:
        mode: The access mode (its rules are data).
        facts: The organisation, the kind of work and the PI/allocation dates.

    Returns:
        All rule results in the order of ``RULES``; ``eligible`` tells the verdict.
    """
    return EligibilityResult(mode.code, tuple(rule(mode, facts) for rule in RULES.values()))
