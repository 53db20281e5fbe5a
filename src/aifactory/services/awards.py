"""Awards: an accepted proposal becomes a project with an allocation and its first ledger entry,
or (hosting call) a new factory or consortium member in the registry."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Factory,
    FactoryMember,
    FundingLine,
    Partition,
    Project,
    ProjectMember,
    Proposal,
)
from aifactory.domain import proposals as flow
from aifactory.domain.calls import effective_gpu_hours
from aifactory.domain.clock import add_months, as_date
from aifactory.domain.enums import AccessModeCode, LedgerKind, ResearchKind, Role
from aifactory.domain.ledger import FundingSplit, attribution_for, from_milli
from aifactory.domain.project_ids import next_project_id, parse_project_id
from aifactory.domain.registry import FactoryStatus, FundingSource
from aifactory.errors import Conflict, Invalid
from aifactory.services import access, audit, ledger, registry
from aifactory.services.audit import AuditAction
from aifactory.settings import FactorySpec


def award(session: Session, proposal: Proposal, at: datetime, actor: str = "system") -> None:
    """Carry out an acceptance: compute for access modes, registry changes for hosting."""
    if proposal.mode == AccessModeCode.HOSTING:
        _accept_hosting(session, proposal)
        audit.record(session, actor, AuditAction.AWARD, ("proposal", proposal.id), hosting=True)
        return
    project = _create_project(session, proposal, at)
    allocation = _create_allocation(session, proposal, project, at)
    hours = proposal.assessed_gpu_hours_milli or proposal.gpu_hours_milli or 0
    audit.record(
        session,
        actor,
        AuditAction.AWARD,
        ("proposal", proposal.id),
        project=project.code,
        allocation=allocation.id,
        gpu_hours=from_milli(hours),
    )


def _create_project(session: Session, proposal: Proposal, at: datetime) -> Project:
    year = at.year
    mode = AccessModeCode(proposal.mode)
    period = proposal.period_no or 1
    prefix = f"EHPC-AIF-{year:04d}{mode}{period:02d}-"
    codes = session.scalars(select(Project.code).where(Project.code.startswith(prefix))).all()
    code = str(next_project_id(year, mode, period, [parse_project_id(c) for c in codes]))
    project = Project(
        code=code,
        proposal_id=proposal.id,
        title=proposal.title,
        mode=proposal.mode,
        organisation_id=proposal.organisation_id,
        factory_id=proposal.factory_id,
        created_at=at,
        members=[ProjectMember(user_id=proposal.applicant_id, role=Role.PI)],
    )
    session.add(project)
    proposal.project_code = code
    session.flush()
    return project


def _create_allocation(
    session: Session, proposal: Proposal, project: Project, at: datetime
) -> Allocation:
    partition_id = proposal.assessed_partition_id or proposal.partition_id
    hours = proposal.assessed_gpu_hours_milli or proposal.gpu_hours_milli
    if partition_id is None or not hours or not proposal.duration_months:
        raise Invalid.field("partition", "required", "an award needs a partition, hours, duration")
    call = access.get_call(proposal.call_id)
    flow.check_grant(
        from_milli(proposal.gpu_hours_milli or 0),
        from_milli(hours),
        effective_gpu_hours(call, access.mode_of(call)),
    )
    factory = session.get_one(Factory, proposal.factory_id)
    start = max(proposal.start_date or as_date(at), as_date(at))
    split = attribution_for(
        ResearchKind(proposal.research_kind),
        FundingSplit(
            Decimal(str(factory.eu_share)),
            Decimal(str(factory.national_share)),
            Decimal(str(factory.commercial_share)),
        ),
    )
    allocation = Allocation(
        project_code=project.code,
        factory_id=factory.id,
        partition_id=partition_id,
        start_date=start,
        end_date=allocation_end(start, proposal.duration_months),
        eu_share=split.eu,
        national_share=split.national,
        commercial_share=split.commercial,
        status="active",
        created_at=at,
    )
    session.add(allocation)
    session.flush()
    session.get_one(Partition, partition_id)  # exists (FK), kept explicit for clarity
    ledger.post(session, allocation.id, LedgerKind.GRANT, hours, "award", note=project.code)
    return allocation


def allocation_end(start: date, months: int) -> date:
    """Last day of an allocation of ``months`` starting on ``start`` (inclusive)."""
    return add_months(start, months) - timedelta(days=1)


def _accept_hosting(session: Session, proposal: Proposal) -> None:
    hosting: dict[str, Any] = proposal.hosting or {}
    handlers = {"new_factory": _new_factory, "join": _join_factory}
    handler = handlers.get(str(hosting.get("kind")))
    if handler is None:
        raise Invalid.field("hosting.kind", "known_kind", "kind must be new_factory or join")
    handler(session, hosting)


def _new_factory(session: Session, hosting: dict[str, Any]) -> None:
    spec = FactorySpec.model_validate({**hosting["factory"], "status": FactoryStatus.SELECTED})
    created = registry.create_factory(session, spec)
    _funding(session, created.id, int(hosting.get("funding_eur", 0)), f"hosting: {spec.name}")


def _join_factory(session: Session, hosting: dict[str, Any]) -> None:
    factory = session.scalar(select(Factory).where(Factory.name == hosting["factory"]))
    if factory is None:
        raise Invalid.field(
            "hosting.factory", "known_factory", f"no factory {hosting['factory']!r}"
        )
    country = str(hosting["country"])
    if country == factory.country_code or any(m.country_code == country for m in factory.members):
        raise Conflict(f"{country} is already in the {factory.name} consortium")
    factory.members.append(FactoryMember(country_code=country))
    _funding(session, factory.id, int(hosting.get("funding_eur", 0)), f"{country} joins")


def _funding(session: Session, factory_id: int, amount: int, purpose: str) -> None:
    if amount > 0:
        session.add(
            FundingLine(
                factory_id=factory_id,
                source=FundingSource.NATIONAL,
                purpose=purpose,
                amount_eur=amount,
            )
        )
    session.flush()
