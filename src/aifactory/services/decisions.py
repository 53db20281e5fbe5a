"""Technical assessment, peer review and decisions on proposals."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Membership, Organisation, Proposal, ReviewAssignment, User
from aifactory.domain import proposals as flow
from aifactory.domain.access_modes import PeerReviewRules
from aifactory.domain.clock import as_date
from aifactory.domain.enums import ProposalStatus as S
from aifactory.domain.enums import Role
from aifactory.domain.ledger import from_milli, to_milli
from aifactory.errors import Conflict, FieldError, Forbidden, Invalid, NotFound
from aifactory.services import access, audit, awards
from aifactory.services.access_views import DecisionBatchView, ProposalView
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.services.proposals import (
    can_see,
    earlier_in_queue,
    load_for_update,
    move,
    resolve_partition,
    view,
)


def assess(
    session: Session,
    who: Principal,
    proposal_id: int,
    feasible: bool,
    now: datetime,
    gpu_hours: Decimal | None = None,
    partition: str | None = None,
    comment: str = "",
) -> ProposalView:
    """The chosen factory's operator rules on feasibility, possibly adjusting hours/partition.

    A feasible proposal moves on (to peer review, or straight to acceptance where the mode has
    none); an infeasible one is rejected. FIFO calls are assessed in submission order.
    """
    proposal = load_for_update(session, proposal_id)
    if not (who.is_admin or who.has(Role.FACTORY_OPERATOR, proposal.factory_id or -1)):
        if not can_see(session, who, proposal):  # the same answer as for an unknown id
            raise NotFound(f"proposal {proposal_id} not found")
        raise Forbidden("only an operator of the proposal's factory may assess it")
    check_impartial(session, who.user_id, who.username, proposal, "assess")
    if proposal.status != S.TECHNICAL_ASSESSMENT:
        raise Conflict(f"proposal {proposal_id} is {proposal.status}, not in technical assessment")
    ahead = earlier_in_queue(session, proposal)
    if ahead is not None:
        raise Conflict(
            f"first come, first served: proposal {ahead.id} (submitted {ahead.submitted_at}) "
            "is ahead in this call's queue"
        )
    if not feasible:
        move(proposal, S.REJECTED, who.username, now, comment or "technically infeasible")
        _audit(session, who.username, AuditAction.ASSESSMENT, proposal, feasible=False)
        session.flush()
        return view(session, proposal, now)
    _adjust(session, proposal, gpu_hours, partition)
    mode = access.mode_of(access.get_call(proposal.call_id))
    target = flow.forward(mode, S.TECHNICAL_ASSESSMENT)
    move(proposal, target, who.username, now, comment or "technically feasible")
    hours = proposal.assessed_gpu_hours_milli or proposal.gpu_hours_milli
    _audit(
        session,
        who.username,
        AuditAction.ASSESSMENT,
        proposal,
        feasible=True,
        gpu_hours=from_milli(hours) if hours else None,
        next=target,
    )
    if target is S.ACCEPTED:
        awards.award(session, proposal, now, who.username)
    session.flush()
    return view(session, proposal, now)


def assign_reviewer(
    session: Session, who: Principal, proposal_id: int, reviewer: str, now: datetime
) -> ProposalView:
    """Federation staff assign a reviewer; nobody reviews a proposal of their own organisation."""
    if not who.is_admin:
        raise Forbidden("only federation admins assign reviewers")
    proposal = load_for_update(session, proposal_id)
    if proposal.status not in (S.TECHNICAL_ASSESSMENT, S.PEER_REVIEW):
        raise Conflict(f"proposal {proposal_id} is {proposal.status}; reviewers come before review")
    user = session.scalar(select(User).where(User.username == reviewer))
    if user is None:
        raise Invalid.field("reviewer", "known_user", f"no user {reviewer!r}")
    if not any(g.role == Role.REVIEWER for g in user.roles):
        raise Invalid.field(
            "reviewer", "reviewer_role", f"{reviewer} does not hold the reviewer role"
        )
    applicant_org = session.get_one(Organisation, proposal.organisation_id).name
    for membership in user.memberships:
        flow.check_reviewer(reviewer, membership.organisation.name, applicant_org)
    if proposal.applicant_id == user.id:
        raise Conflict(f"{reviewer} is the applicant", extra={"rule": "reviewer_conflict"})
    if any(r.reviewer_id == user.id for r in proposal.reviews):
        raise Conflict(f"{reviewer} is already assigned to proposal {proposal_id}")
    proposal.reviews.append(ReviewAssignment(reviewer_id=user.id, assigned_at=now))
    _audit(session, who.username, AuditAction.REVIEWER_ASSIGN, proposal, reviewer=reviewer)
    session.flush()
    return view(session, proposal, now)


def review(
    session: Session,
    who: Principal,
    proposal_id: int,
    scores: dict[str, Decimal],
    now: datetime,
    comment: str = "",
) -> ProposalView:
    """An assigned reviewer scores every criterion of the mode."""
    proposal = load_for_update(session, proposal_id)
    assignment = next((r for r in proposal.reviews if r.reviewer_id == who.user_id), None)
    if assignment is None:
        if not can_see(session, who, proposal):  # the same answer as for an unknown id
            raise NotFound(f"proposal {proposal_id} not found")
        raise Forbidden(f"{who.username} is not assigned to review proposal {proposal_id}")
    if proposal.status != S.PEER_REVIEW:
        raise Conflict(f"proposal {proposal_id} is {proposal.status}, not in peer review")
    check_impartial(session, who.user_id, who.username, proposal, "review")
    rules = _review_rules(proposal)
    flow.validate_scores(rules, scores)
    assignment.scores = {k: str(v) for k, v in scores.items()}
    assignment.comment, assignment.submitted_at = comment, now
    _audit(session, who.username, AuditAction.REVIEW, proposal, scores=list(scores.items()))
    session.flush()
    return view(session, proposal, now)


def decide(
    session: Session, who: Principal, proposal_id: int, accept: bool, now: datetime, comment: str
) -> ProposalView:
    """Federation staff decide one proposal after peer review (cut-off modes: after its cut-off)."""
    if not who.is_admin:
        raise Forbidden("only federation admins decide")
    proposal = load_for_update(session, proposal_id)
    check_impartial(session, who.user_id, who.username, proposal, "decide")
    _decide(session, proposal, accept, who.username, now, comment)
    return view(session, proposal, now)


def decide_cutoff(
    session: Session, who: Principal, call_id: str, cutoff: date, now: datetime
) -> DecisionBatchView:
    """Decide a cut-off's batch from the peer review outcome; incomplete reviews wait."""
    if not who.is_admin:
        raise Forbidden("only federation admins decide")
    access.get_call(call_id)
    batch = session.scalars(
        select(Proposal)
        .where(Proposal.call_id == call_id, Proposal.cutoff == cutoff)
        .where(Proposal.status == S.PEER_REVIEW)
        .order_by(Proposal.submitted_at)
        .with_for_update()
    ).all()
    out = DecisionBatchView(call_id=call_id, cutoff=cutoff, accepted=[], rejected=[], waiting={})
    for proposal in batch:
        outcome = _outcome(proposal)
        if _conflicted(session, who.user_id, proposal):
            outcome = "for another admin (conflict of interest)"
        if isinstance(outcome, str):
            out.waiting[proposal.id] = outcome
            continue
        _decide(session, proposal, outcome.passed, who.username, now, outcome.reason)
        (out.accepted if outcome.passed else out.rejected).append(proposal.id)
    return out


# --- helpers ---------------------------------------------------------------------------------


def check_impartial(
    session: Session, user_id: int, username: str, proposal: Proposal, act: str
) -> None:
    """Nobody assesses, reviews or decides a proposal they applied with or one of their
    organisation's (whatever roles they hold); someone else with the role must act."""
    if not _conflicted(session, user_id, proposal):
        return
    org = session.get_one(Organisation, proposal.organisation_id).name
    msg = (
        f"conflict of interest: {username} is the applicant of proposal {proposal.id} or a member "
        f"of {org}, its organisation; another person with the role must {act} it"
    )
    raise Forbidden(msg, [FieldError("proposal", "conflict_of_interest", msg)])


def _conflicted(session: Session, user_id: int, proposal: Proposal) -> bool:
    if user_id == proposal.applicant_id:
        return True
    member = select(Membership.id).where(
        Membership.user_id == user_id, Membership.organisation_id == proposal.organisation_id
    )
    return session.scalar(member) is not None


def _audit(
    session: Session, actor: str, action: AuditAction, proposal: Proposal, **detail: Any
) -> None:
    audit.record(session, actor, action, ("proposal", proposal.id), **detail)


def _decide(
    session: Session, proposal: Proposal, accept: bool, actor: str, at: datetime, comment: str
) -> None:
    if proposal.cutoff is not None and as_date(at) < proposal.cutoff:
        raise Conflict(
            f"proposal {proposal.id} belongs to the {proposal.cutoff} cut-off; "
            "it is decided with its batch after that date"
        )
    move(proposal, S.ACCEPTED if accept else S.REJECTED, actor, at, comment)
    _audit(session, actor, AuditAction.DECISION, proposal, accept=accept, comment=comment)
    if accept:
        awards.award(session, proposal, at, actor)
    session.flush()


def _outcome(proposal: Proposal) -> flow.PeerReviewOutcome | str:
    rules = _review_rules(proposal)
    done = [r for r in proposal.reviews if r.scores is not None]
    if len(done) < rules.min_reviewers:
        return f"for reviews ({len(done)} of {rules.min_reviewers} in)"
    reviews = [
        flow.Review(str(r.reviewer_id), "", {k: Decimal(v) for k, v in (r.scores or {}).items()})
        for r in done
    ]
    return flow.aggregate_reviews(rules, reviews)


def _review_rules(proposal: Proposal) -> PeerReviewRules:
    rules = access.mode_of(access.get_call(proposal.call_id)).peer_review
    if rules is None:
        raise Conflict(f"mode {proposal.mode} has no peer review")
    return rules


def _adjust(
    session: Session, proposal: Proposal, gpu_hours: Decimal | None, partition: str | None
) -> None:
    if gpu_hours is not None:
        requested = from_milli(proposal.gpu_hours_milli or 0)
        flow.check_grant(requested, gpu_hours, None)
        proposal.assessed_gpu_hours_milli = to_milli(gpu_hours)
    if partition is not None:
        proposal.assessed_partition_id = resolve_partition(session, proposal.factory_id, partition)
    needs_partition = proposal.mode != "HC" and not proposal.resources  # rows say where
    if needs_partition and (proposal.assessed_partition_id or proposal.partition_id) is None:
        raise Invalid.field(
            "partition", "required", "name the partition (SYSTEM/PARTITION) to award"
        )
