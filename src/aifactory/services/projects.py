"""Projects and allocations: who may see them, their balances and ledgers."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Factory,
    Organisation,
    Partition,
    Project,
    ProjectMember,
    System,
    User,
)
from aifactory.domain.entitlements import FEDERATION
from aifactory.domain.enums import Role
from aifactory.domain.ledger import from_milli
from aifactory.errors import NotFound
from aifactory.services import ledger
from aifactory.services.access_views import (
    AllocationView,
    BalanceView,
    LedgerEntryView,
    MemberView,
    ProjectView,
)
from aifactory.services.permissions import Principal


def visible_allocations(who: Principal) -> Select[int]:
    """Ids of the allocations this user may see: all (admin), their factory's, their projects'."""
    query = select(Allocation.id)
    if who.is_admin:
        return query
    factories = [f for role, f in who.roles if role == Role.FACTORY_OPERATOR and f is not None]
    mine = select(ProjectMember.project_code).where(ProjectMember.user_id == who.user_id)
    return query.where(Allocation.factory_id.in_(factories) | Allocation.project_code.in_(mine))


def can_see_project(session: Session, who: Principal, project: Project) -> bool:
    if who.is_admin or any(m.user_id == who.user_id for m in project.members):
        return True
    return project.factory_id is not None and who.has(Role.FACTORY_OPERATOR, project.factory_id)


def get_project(session: Session, who: Principal, code: str) -> ProjectView:
    project = session.get(Project, code)
    if project is None or not can_see_project(session, who, project):
        # one answer for unknown and unseen projects: the code's existence is not revealed
        raise NotFound(f"project {code!r} not found")
    names = {
        uid: name
        for uid, name in session.execute(
            select(User.id, User.username).where(User.id.in_([m.user_id for m in project.members]))
        )
    }
    allocations = [
        allocation_view(session, a)
        for a in session.scalars(
            select(Allocation).where(Allocation.project_code == code).order_by(Allocation.id)
        )
    ]
    return ProjectView(
        code=project.code,
        title=project.title,
        mode=project.mode,
        organisation=session.get_one(Organisation, project.organisation_id).name,
        factory=session.get_one(Factory, project.factory_id).name if project.factory_id else None,
        proposal_id=project.proposal_id,
        members=[MemberView(username=names[m.user_id], role=m.role) for m in project.members],
        allocations=allocations,
        total=BalanceView(
            **{f: sum((getattr(a, f) for a in allocations), Decimal(0)) for f in _BALANCE}
        ),
    )


_BALANCE = ("granted", "used", "reserved", "expired", "remaining")


def list_projects(session: Session, who: Principal) -> list[ProjectView]:
    codes = session.scalars(
        select(Allocation.project_code).where(Allocation.id.in_(visible_allocations(who)))
    ).all()
    mine = session.scalars(
        select(ProjectMember.project_code).where(ProjectMember.user_id == who.user_id)
    ).all()
    return [get_project(session, who, c) for c in sorted({*codes, *mine})]


def get_allocation(session: Session, who: Principal, allocation_id: int) -> AllocationView:
    return allocation_view(session, _visible(session, who, allocation_id))


def get_ledger(session: Session, who: Principal, allocation_id: int) -> list[LedgerEntryView]:
    _visible(session, who, allocation_id)
    return [
        LedgerEntryView(
            id=e.id,
            kind=e.kind,
            gpu_hours=from_milli(e.amount_milli),
            at=e.at,
            actor=e.actor,
            job_ref=e.job_ref,
            note=e.note,
        )
        for e in ledger.entries(session, allocation_id)
    ]


def allocation_view(session: Session, a: Allocation) -> AllocationView:
    totals = ledger.state(session, a.id)
    factory, system, partition = _where(session, a)
    return AllocationView(
        id=a.id,
        project_code=a.project_code,
        scope=a.scope,
        factory=factory,
        system=system,
        partition=partition,
        start_date=a.start_date,
        end_date=a.end_date,
        status=a.status,
        usage_level=a.usage_level,
        funding={"eu": a.eu_share, "national": a.national_share, "commercial": a.commercial_share},
        granted=from_milli(totals.granted),
        used=from_milli(totals.used),
        reserved=from_milli(totals.reserved),
        expired=from_milli(totals.expired),
        remaining=from_milli(totals.remaining),
    )


def _where(session: Session, a: Allocation) -> tuple[str, str, str]:
    """(factory, system, partition) names; a federation allocation has none of its own."""
    if a.partition_id is None:
        return FEDERATION, "", FEDERATION
    partition = session.get_one(Partition, a.partition_id)
    system = session.get_one(System, partition.system_id)
    return session.get_one(Factory, system.factory_id).name, system.name, partition.name


def _visible(session: Session, who: Principal, allocation_id: int) -> Allocation:
    allocation = session.get(Allocation, allocation_id)
    visible = visible_allocations(who).where(Allocation.id == allocation_id)
    if allocation is None or session.scalar(visible) is None:
        # one answer for unknown and unseen allocations: the id's existence is not revealed
        raise NotFound(f"allocation {allocation_id} not found")
    return allocation
