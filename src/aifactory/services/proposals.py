"""Proposal lifecycle over the database: draft, submit, assess, review, decide, withdraw.

Every status change goes through ``domain.proposals.transition`` and is recorded with who,
when, from, to and why. Object-level permissions are checked here: applicants see their own,
operators their factory's, reviewers what they are assigned, federation admins everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Factory,
    Organisation,
    Partition,
    Proposal,
    ProposalTransition,
    ReviewAssignment,
    System,
    User,
)
from aifactory.domain import proposals as flow
from aifactory.domain.access_modes import check_request
from aifactory.domain.calls import Call, effective_gpu_hours, effective_service_level, open_period
from aifactory.domain.clock import as_date, is_overdue, service_deadline
from aifactory.domain.enums import ProposalStatus as S
from aifactory.domain.enums import ResearchKind, Role, SelectionMethod
from aifactory.domain.ledger import from_milli, to_milli
from aifactory.domain.proposal_sections import ResourceRow, Sections
from aifactory.errors import Conflict, Forbidden, Invalid, NotFound
from aifactory.services import access, entitlements, hosting
from aifactory.services import proposal_sections as sections
from aifactory.services.access_views import ProposalView, ReviewView, RuleView, TransitionView
from aifactory.services.permissions import Principal


@dataclass(frozen=True)
class ProposalInput:
    call_id: str
    title: str
    organisation: str
    research_kind: ResearchKind
    summary: str = ""
    gpu_hours: Decimal | None = None
    duration_months: int | None = None
    start_date: date | None = None
    pi_contract_end: date | None = None
    partition: str | None = None
    hosting: dict[str, Any] | None = None
    resources: tuple[ResourceRow, ...] = ()
    sections: Sections | None = None


# --- create, submit, withdraw ----------------------------------------------------------------


def create(session: Session, who: Principal, data: ProposalInput, now: datetime) -> ProposalView:
    """Store a draft after checking what can be checked before submission."""
    _require_any(who, Role.APPLICANT, Role.PI, Role.PROJECT_MEMBER, Role.FEDERATION_ADMIN)
    proposal = Proposal(applicant_id=who.user_id, status=S.DRAFT, created_at=now)
    fill(session, who, proposal, data, now)
    session.add(proposal)
    session.flush()
    return view(session, proposal, now)


def fill(
    session: Session, who: Principal, proposal: Proposal, data: ProposalInput, now: datetime
) -> None:
    """Check ``data`` as far as it can be checked before submission and write it onto the
    proposal (a new draft, or a draft being changed), its resource rows and sections too."""
    call = access.get_call(data.call_id)
    mode = access.mode_of(call)
    open_period(call, mode, as_date(now))
    org = organisation_of(session, who, data.organisation)
    factory_id = _factory_id(session, call.factory)
    data, rows = sections.normalise(data, lambda label: entitlements.resolve(session, label))
    pids = [pid for pid, _ in rows]
    partition_id = next((p for p in pids if p is not None), None)  # the first row's, anywhere
    if data.partition and not rows:  # a partition named without hours: at the call's factory
        partition_id = _partition_id(session, factory_id, data.partition)
    _check_dates(data, as_date(now))
    if mode.gpu_hours is not None:
        _check_size(call, data)
        entitlements.check_rows(session, call, factory_id, pids)
    elif data.hosting is None:
        raise Invalid.field("hosting", "required", "a hosting proposal says what it proposes")
    else:  # checked against the registry now, again when accepted (services/hosting.py)
        proposal.hosting = hosting.check(session, data.hosting)
    proposal.call_id, proposal.mode, proposal.factory_id = call.id, call.mode, factory_id
    proposal.partition_id, proposal.organisation_id = partition_id, org.id
    proposal.title, proposal.summary = data.title, data.summary
    proposal.research_kind = data.research_kind
    proposal.gpu_hours_milli = to_milli(data.gpu_hours) if data.gpu_hours is not None else None
    proposal.duration_months, proposal.start_date = data.duration_months, data.start_date
    proposal.pi_contract_end = data.pi_contract_end
    if data.hosting is None:
        proposal.hosting = None
    sections.store(session, proposal, rows, data.sections)


def update(
    session: Session, who: Principal, proposal_id: int, data: ProposalInput, now: datetime
) -> ProposalView:
    """Replace what a draft says (its applicant only; a submitted proposal is fixed)."""
    proposal = own(session, who, proposal_id)
    if proposal.status != S.DRAFT:
        raise Conflict(f"proposal {proposal_id} is {proposal.status}; only a draft is changed")
    if data.call_id != proposal.call_id:
        msg = f"proposal {proposal_id} answers call {proposal.call_id}; create a new one"
        raise Invalid.field("call_id", "same_call", msg)
    fill(session, who, proposal, data, now)
    session.flush()
    return view(session, proposal, now)


def submit(session: Session, who: Principal, proposal_id: int, now: datetime) -> ProposalView:
    """Check eligibility (refusing with every failing rule), start the clock, queue it."""
    proposal = own(session, who, proposal_id)
    call = access.get_call(proposal.call_id)
    mode = access.mode_of(call)
    cutoff, period = open_period(call, mode, as_date(now))
    sections.check_complete(proposal)
    entitlements.check_proposal(session, proposal)  # the call's limits may have changed
    org = session.get_one(Organisation, proposal.organisation_id)
    result = access.check(
        session,
        call,
        org.name,
        ResearchKind(proposal.research_kind),
        proposal.start_date or as_date(now),
        proposal.duration_months,
        proposal.pi_contract_end,
    )
    result.raise_if_ineligible()
    move(proposal, S.SUBMITTED, who.username, now, "eligibility passed")
    proposal.eligibility = [r.as_dict() for r in result.rules]
    proposal.submitted_at, proposal.cutoff, proposal.period_no = now, cutoff, period
    level = effective_service_level(call, mode)
    if level is not None:
        holidays = access.catalogue()[2]
        proposal.deadline = service_deadline(level, now, cutoff, holidays)
    move(proposal, flow.forward(mode, S.SUBMITTED), "system", now, "queued")
    session.flush()
    return view(session, proposal, now)


def withdraw(
    session: Session, who: Principal, proposal_id: int, now: datetime, comment: str = ""
) -> ProposalView:
    proposal = own(session, who, proposal_id)
    move(proposal, S.WITHDRAWN, who.username, now, comment or "withdrawn by the applicant")
    session.flush()
    return view(session, proposal, now)


# --- reads -----------------------------------------------------------------------------------


def get(session: Session, who: Principal, proposal_id: int, now: datetime) -> ProposalView:
    proposal = _load(session, proposal_id)
    if not can_see(session, who, proposal):  # the same answer as for an unknown id
        raise NotFound(f"proposal {proposal_id} not found")
    return view(session, proposal, now)


def list_visible(
    session: Session, who: Principal, now: datetime, status: str | None = None
) -> list[ProposalView]:
    """The proposals this user may see, in submission order (FIFO queue order)."""
    query = _visible_query(who)
    if status:
        query = query.where(Proposal.status == status)
    rows = session.scalars(
        query.order_by(Proposal.submitted_at.is_(None), Proposal.submitted_at, Proposal.id)
    )
    return [view(session, p, now) for p in rows]


def can_see(session: Session, who: Principal, proposal: Proposal) -> bool:
    if who.is_admin or proposal.applicant_id == who.user_id:
        return True
    if proposal.factory_id is not None and who.has(Role.FACTORY_OPERATOR, proposal.factory_id):
        return True
    return any(r.reviewer_id == who.user_id for r in proposal.reviews)


def view(session: Session, p: Proposal, now: datetime) -> ProposalView:
    decided = p.status in {S.ACCEPTED, S.REJECTED, S.WITHDRAWN}
    people = [p.applicant_id, *(r.reviewer_id for r in p.reviews)]
    names = _user_names(session, [*people, *(a.uploader_id for a in p.attachments)])
    return ProposalView(
        id=p.id,
        call_id=p.call_id,
        mode=p.mode,
        factory=session.get_one(Factory, p.factory_id).name if p.factory_id else None,
        partition=partition_label(session, p.partition_id),
        organisation=session.get_one(Organisation, p.organisation_id).name,
        applicant=names[p.applicant_id],
        title=p.title,
        summary=p.summary,
        research_kind=p.research_kind,
        gpu_hours=_hours(p.gpu_hours_milli),
        duration_months=p.duration_months,
        start_date=p.start_date,
        pi_contract_end=p.pi_contract_end,
        status=p.status,
        submitted_at=p.submitted_at,
        cutoff=p.cutoff,
        deadline=p.deadline,
        overdue=p.deadline is not None and is_overdue(p.deadline, now, decided),
        assessed_gpu_hours=_hours(p.assessed_gpu_hours_milli),
        assessed_partition=partition_label(session, p.assessed_partition_id),
        decided_at=p.decided_at,
        project_code=p.project_code,
        hosting=p.hosting,
        resources=sections.resource_views(session, p),
        sections=Sections.model_validate(p.sections) if p.sections else None,
        attachments=[sections.attachment_view(a, names) for a in p.attachments],
        eligibility=[RuleView.model_validate(r) for r in p.eligibility or []] or None,
        transitions=[
            TransitionView(
                actor=t.actor,
                at=t.at,
                from_status=t.from_status,
                to_status=t.to_status,
                comment=t.comment,
            )
            for t in p.transitions
        ],
        reviews=[
            ReviewView(
                reviewer=names[r.reviewer_id],
                submitted=r.submitted_at is not None,
                scores={k: Decimal(v) for k, v in (r.scores or {}).items()} or None,
                comment=r.comment,
            )
            for r in p.reviews
        ],
    )


# --- shared helpers (also used by reviews and awards) ----------------------------------------


def load_for_update(session: Session, proposal_id: int) -> Proposal:
    """The proposal with its row locked (PostgreSQL) so two decisions cannot race."""
    proposal = session.get(Proposal, proposal_id, with_for_update=True, populate_existing=True)
    if proposal is None:
        raise NotFound(f"proposal {proposal_id} not found")
    return proposal


def move(proposal: Proposal, target: S, actor: str, at: datetime, comment: str) -> None:
    call = access.get_call(proposal.call_id)
    record = flow.transition(access.mode_of(call), S(proposal.status), target, actor, at, comment)
    proposal.transitions.append(
        ProposalTransition(
            actor=record.actor,
            at=record.at,
            from_status=record.from_status,
            to_status=record.to_status,
            comment=record.comment,
        )
    )
    proposal.status = target
    if target in flow.DECISIONS:
        proposal.decided_at = at


def earlier_in_queue(session: Session, proposal: Proposal) -> Proposal | None:
    """For FIFO calls: an earlier submitted proposal of the same call still in assessment."""
    mode = access.mode_of(access.get_call(proposal.call_id))
    if mode.selection is not SelectionMethod.FIFO or proposal.submitted_at is None:
        return None
    result: Proposal | None = session.scalar(
        select(Proposal)
        .where(
            Proposal.call_id == proposal.call_id,
            Proposal.status == proposal.status,
            Proposal.submitted_at < proposal.submitted_at,
        )
        .order_by(Proposal.submitted_at)
        .limit(1)
    )
    return result


def partition_label(session: Session, partition_id: int | None) -> str | None:
    if partition_id is None:
        return None
    partition = session.get_one(Partition, partition_id)
    return f"{session.get_one(System, partition.system_id).name}/{partition.name}"


def resolve_partition(session: Session, factory_id: int | None, label: str) -> int:
    return _partition_id(session, factory_id, label)


def _load(session: Session, proposal_id: int) -> Proposal:
    proposal = session.get(Proposal, proposal_id)
    if proposal is None:
        raise NotFound(f"proposal {proposal_id} not found")
    return proposal


def own(session: Session, who: Principal, proposal_id: int) -> Proposal:
    """The proposal, for its applicant (or an admin) to change: 404 to whoever may not see it,
    403 to those who may see it but not change it (its factory's operators, its reviewers)."""
    proposal = load_for_update(session, proposal_id)
    if proposal.applicant_id == who.user_id or who.is_admin:
        return proposal
    if not can_see(session, who, proposal):
        raise NotFound(f"proposal {proposal_id} not found")
    raise Forbidden(f"only the applicant may change proposal {proposal_id}")


def _visible_query(who: Principal) -> Select[Proposal]:
    query = select(Proposal)
    if who.is_admin:
        return query
    factories = [f for role, f in who.roles if role == Role.FACTORY_OPERATOR and f is not None]
    reviewing = select(ReviewAssignment.proposal_id).where(
        ReviewAssignment.reviewer_id == who.user_id
    )
    return query.where(
        (Proposal.applicant_id == who.user_id)
        | Proposal.factory_id.in_(factories)
        | Proposal.id.in_(reviewing)
    )


def _require_any(who: Principal, *roles: Role) -> None:
    if not any(who.has(r) for r in roles):
        raise Forbidden(f"needs one of: {', '.join(roles)}")


def organisation_of(session: Session, who: Principal, name: str) -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    user = session.get_one(User, who.user_id)
    member = org is not None and any(m.organisation_id == org.id for m in user.memberships)
    if org is None or not (who.is_admin or member):  # one answer: existence is not told
        msg = f"{name!r} is not an organisation you belong to"
        raise Invalid.field("organisation", "your_organisation", msg)
    return org


def _factory_id(session: Session, name: str | None) -> int | None:
    if name is None:
        return None
    fid = session.scalar(select(Factory.id).where(Factory.name == name))
    if fid is None:
        raise Invalid.field("factory", "known_factory", f"the call's factory {name!r} is unknown")
    return fid


def _partition_id(session: Session, factory_id: int | None, label: str) -> int:
    system_name, _, partition_name = label.partition("/")
    pid = session.scalar(
        select(Partition.id)
        .join(System, Partition.system_id == System.id)
        .where(
            System.factory_id == factory_id,
            System.name == system_name,
            Partition.name == partition_name,
        )
    )
    if pid is None:
        msg = f"no partition {label!r} (as SYSTEM/PARTITION) at the call's factory"
        raise Invalid.field("partition", "known_partition", msg)
    return pid


def _check_dates(data: ProposalInput, today: date) -> None:
    if data.start_date is not None and data.start_date < today:
        raise Invalid.field("start_date", "not_past", f"start {data.start_date} is in the past")
    start = data.start_date or today
    if data.pi_contract_end is not None and data.pi_contract_end < start:
        msg = f"PI contract ends {data.pi_contract_end}, before the start {start} (reversed dates)"
        raise Invalid.field("pi_contract_end", "date_order", msg)


def _check_size(call: Call, data: ProposalInput) -> None:
    if data.gpu_hours is None or data.duration_months is None:
        missing = "gpu_hours" if data.gpu_hours is None else "duration_months"
        raise Invalid.field(missing, "required", f"{missing} is required for this call")
    if data.gpu_hours <= 0:
        raise Invalid.field("gpu_hours", "positive", f"{data.gpu_hours} GPU-hours is not > 0")
    mode = access.mode_of(call)
    check_request(mode, data.gpu_hours, data.duration_months, 1, effective_gpu_hours(call, mode))


def _user_names(session: Session, ids: list[int]) -> dict[int, str]:
    rows = session.execute(select(User.id, User.username).where(User.id.in_(ids)))
    return {uid: name for uid, name in rows}


def _hours(milli: int | None) -> Decimal | None:
    return None if milli is None else from_milli(milli)
