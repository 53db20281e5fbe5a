"""Calls, access modes and eligibility: what a would-be applicant looks at before applying."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.db.models import Country, Factory, Organisation
from aifactory.domain import eligibility as elig
from aifactory.domain.access_modes import AccessMode, load_access_modes
from aifactory.domain.calls import Call, effective_gpu_hours, effective_service_level, load_calls
from aifactory.domain.clock import Holidays, add_months, load_holidays
from aifactory.domain.enums import AccessModeCode, CountryStatus, OrganisationType, ResearchKind
from aifactory.domain.sme import EnterpriseFigures, RelatedEnterprise
from aifactory.errors import Invalid, NotFound
from aifactory.services.access_views import CallView, EligibilityView, RuleView

Catalogue = tuple[Mapping[AccessModeCode, AccessMode], dict[str, Call], Holidays]

#: How often (seconds) a process looks whether the registry gained factories (whose calls then
#: appear): one cheap query at most this often, on the next request that opens a session.
REGISTRY_CHECK_S = 1.0


@dataclass
class _RegistryFactories:
    """The registry's factory names that the calls are expanded for, and when last checked."""

    names: tuple[str, ...] = ()
    fingerprint: tuple[object, ...] = ()
    database: object = None
    checked: float = -math.inf


_REGISTRY = _RegistryFactories()


def catalogue() -> Catalogue:
    """Modes, calls (the shipped ones and the per-factory calls of every factory in the
    registry, as last synchronised by ``sync_calls``) and holidays."""
    return _catalogue_for(_REGISTRY.names)


@lru_cache(maxsize=8)
def _catalogue_for(factories: tuple[str, ...]) -> Catalogue:
    return load_access_modes(), {c.id: c for c in load_calls(factories)}, load_holidays()


def sync_calls(session: Session) -> None:
    """Expand the call templates over the registry's factories when the registry has changed.

    Factories are added (never renamed or removed), so their count and highest id tell whether
    the names must be read again. Checked at most every ``REGISTRY_CHECK_S`` seconds per process
    (``invalidate_calls`` makes the next call check): a factory added by another process gets
    its calls here within that time, without a restart.
    """
    now, database = time.monotonic(), session.get_bind()
    if now - _REGISTRY.checked < REGISTRY_CHECK_S and database is _REGISTRY.database:
        return
    _REGISTRY.checked, _REGISTRY.database = now, database
    count, top = session.execute(select(func.count(Factory.id), func.max(Factory.id))).one()
    fingerprint = (id(database), str(database.engine.url), int(count), int(top or 0))
    if fingerprint != _REGISTRY.fingerprint:
        names = session.scalars(select(Factory.name).order_by(Factory.id))
        _REGISTRY.names, _REGISTRY.fingerprint = tuple(names), fingerprint


def invalidate_calls() -> None:
    """Make the next ``sync_calls`` look at the registry (after this process added a factory)."""
    _REGISTRY.checked, _REGISTRY.fingerprint = -math.inf, ()


def modes() -> list[AccessMode]:
    return list(catalogue()[0].values())


def mode_of(call: Call) -> AccessMode:
    return catalogue()[0][call.mode]


def get_call(call_id: str) -> Call:
    call = catalogue()[1].get(call_id)
    if call is None:
        raise Invalid.field("call_id", "known_call", f"no call {call_id!r}; see `aif calls list`")
    return call


def list_calls(
    today: date, mode: str | None = None, factory: str | None = None, open_only: bool = False
) -> list[CallView]:
    calls = catalogue()[1].values()
    views = [
        call_view(c, today)
        for c in calls
        if (mode is None or c.mode == mode) and (factory is None or c.factory == factory)
    ]
    return [v for v in views if v.open_today or not open_only]


def call_view(call: Call, today: date) -> CallView:
    mode = mode_of(call)
    limits = effective_gpu_hours(call, mode)
    level = effective_service_level(call, mode)
    upcoming = [c for c in call.all_cutoffs if c >= today]
    return CallView(
        id=call.id,
        title=call.title,
        mode=call.mode,
        mode_name=mode.name,
        factory=call.factory,
        opens=call.opens,
        closes=call.closes,
        open_today=call.opens <= today and (call.closes is None or today <= call.closes),
        next_cutoff=upcoming[0] if upcoming else None,
        upcoming_cutoffs=upcoming[:6],
        gpu_hours_limits=limits.describe() if limits else None,
        durations_months=list(mode.durations_months),
        selection=mode.selection,
        steps=sorted(mode.steps),
        service_level_working_days=level.working_days if level else None,
        service_level_counts_from=level.counts_from if level else None,
        note=call.note,
    )


def organisation_facts(session: Session, org: Organisation) -> elig.OrganisationFacts:
    """Eligibility facts from a stored organisation (SME figures, partner/linked enterprises)."""
    country = session.get(Country, org.country_code)
    status = CountryStatus(country.status) if country else CountryStatus.OTHER
    figures = None
    if org.staff_headcount is not None:
        figures = EnterpriseFigures(
            Decimal(org.staff_headcount),
            Decimal(org.annual_turnover_eur or 0),
            Decimal(org.balance_sheet_eur or 0),
        )
    related = tuple(
        RelatedEnterprise(
            str(link["name"]),
            EnterpriseFigures(
                Decimal(str(link.get("staff", 0))),
                Decimal(str(link.get("turnover_eur", 0))),
                Decimal(str(link.get("balance_sheet_eur", 0))),
            ),
            Decimal(str(link["share"])),
        )
        for link in org.enterprise_links or []
    )
    return elig.OrganisationFacts(
        name=org.name,
        type=OrganisationType(org.type),
        country_status=status,
        country=org.country_code,
        figures=figures,
        related=related,
    )


def check(
    session: Session,
    call: Call,
    organisation: str,
    research_kind: ResearchKind,
    start: date,
    duration_months: int | None,
    pi_contract_end: date | None,
) -> elig.EligibilityResult:
    """Every eligibility rule of the call's mode, each with pass/fail and its reason."""
    org = session.scalar(select(Organisation).where(Organisation.name == organisation))
    if org is None:
        raise NotFound(f"organisation {organisation!r} not found")
    end = add_months(start, duration_months) if duration_months else None
    facts = elig.EligibilityInput(
        organisation=organisation_facts(session, org),
        research_kind=research_kind,
        pi_contract_end=pi_contract_end,
        allocation_end=end,
    )
    return elig.check_eligibility(mode_of(call), facts)


def eligibility_view(result: elig.EligibilityResult) -> EligibilityView:
    return EligibilityView(
        mode=result.mode,
        eligible=result.eligible,
        rules=[RuleView(rule=r.rule, passed=r.passed, reason=r.reason) for r in result.rules],
    )
