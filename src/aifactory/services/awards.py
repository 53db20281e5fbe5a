"""Awards: an accepted proposal becomes a project with one allocation per resource row (a
partition, or the federation) and their first ledger entries, or (hosting call) a new factory or
consortium member in the registry."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Factory,
    Partition,
    Project,
    ProjectMember,
    Proposal,
    System,
)
from aifactory.domain import proposals as flow
from aifactory.domain.calls import effective_gpu_hours
from aifactory.domain.clock import add_months, as_date
from aifactory.domain.entitlements import Grant, grants
from aifactory.domain.enums import AccessModeCode, LedgerKind, ResearchKind, Role
from aifactory.domain.ledger import FundingSplit, attribution_for, from_milli
from aifactory.domain.project_ids import next_project_id, parse_project_id
from aifactory.errors import Invalid
from aifactory.services import access, audit, entitlements, hosting, ledger
from aifactory.services.audit import AuditAction


def award(session: Session, proposal: Proposal, at: datetime, actor: str = "system") -> None:
    """Carry out an acceptance: compute for access modes, registry changes for hosting."""
    if proposal.mode == AccessModeCode.HOSTING:
        _accept_hosting(session, proposal, actor)
        audit.record(session, actor, AuditAction.AWARD, ("proposal", proposal.id), hosting=True)
        return
    project = _create_project(session, proposal, at)
    allocations = _create_allocations(session, proposal, project, at)
    hours = proposal.assessed_gpu_hours_milli or proposal.gpu_hours_milli or 0
    audit.record(
        session,
        actor,
        AuditAction.AWARD,
        ("proposal", proposal.id),
        project=project.code,
        allocation=allocations[0].id,
        allocations=[a.id for a in allocations],
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


def _create_allocations(
    session: Session, proposal: Proposal, project: Project, at: datetime
) -> list[Allocation]:
    """One allocation per resource row (``domain.entitlements.grants``), each with its grant;
    a proposal without rows gets one on its (assessed) partition, as it always did."""
    hours = proposal.assessed_gpu_hours_milli or proposal.gpu_hours_milli
    if not hours or not proposal.duration_months:
        raise Invalid.field("partition", "required", "an award needs a partition, hours, duration")
    call = access.get_call(proposal.call_id)
    flow.check_grant(
        from_milli(proposal.gpu_hours_milli or 0),
        from_milli(hours),
        effective_gpu_hours(call, access.mode_of(call)),
    )
    entitlements.check_proposal(session, proposal)
    start = max(proposal.start_date or as_date(at), as_date(at))
    period = (start, allocation_end(start, proposal.duration_months))
    return [
        _create_allocation(session, proposal, project, grant, period, at)
        for grant in _grants(proposal, hours)
    ]


def _grants(proposal: Proposal, hours: int) -> list[Grant]:
    if proposal.resources:
        rows = [(r.partition_id, r.gpu_hours_milli) for r in proposal.resources]
        return grants(rows, proposal.assessed_gpu_hours_milli, proposal.assessed_partition_id)
    partition_id = proposal.assessed_partition_id or proposal.partition_id
    if partition_id is None:
        raise Invalid.field("partition", "required", "an award needs a partition, hours, duration")
    return [Grant(partition_id, hours)]


def _create_allocation(
    session: Session,
    proposal: Proposal,
    project: Project,
    grant: Grant,
    period: tuple[date, date],
    at: datetime,
) -> Allocation:
    """An allocation and its ledger grant. Its funding split is its factory's; a federation
    allocation's is the awarding factory's, for the hours not yet used (each charge is
    attributed by the factory where it ran)."""
    factory_id = proposal.factory_id
    if grant.partition_id is not None:
        partition = session.get_one(Partition, grant.partition_id)
        factory_id = session.get_one(System, partition.system_id).factory_id
    factory = session.get_one(Factory, factory_id)
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
        scope=grant.scope,
        factory_id=factory.id if grant.partition_id is not None else None,
        partition_id=grant.partition_id,
        start_date=period[0],
        end_date=period[1],
        eu_share=split.eu,
        national_share=split.national,
        commercial_share=split.commercial,
        status="active",
        created_at=at,
    )
    session.add(allocation)
    session.flush()
    ledger.post(session, allocation.id, LedgerKind.GRANT, grant.milli, "award", note=project.code)
    return allocation


def allocation_end(start: date, months: int) -> date:
    """Last day of an allocation of ``months`` starting on ``start`` (inclusive)."""
    return add_months(start, months) - timedelta(days=1)


def _accept_hosting(session: Session, proposal: Proposal, actor: str) -> None:
    """A new factory or consortium member, with its funding (``services/hosting.py``)."""
    hosting.accept(session, proposal.hosting or {}, actor)
