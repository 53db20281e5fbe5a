"""Staff queues: reviewers score, operators assess and watch their factories, admins decide."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.domain.enums import ProposalStatus, Role
from aifactory.domain.jobs import JobState
from aifactory.domain.proposal_sections import ETHICS_QUESTIONS
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render, require_role
from aifactory.portal.workload import utilisation
from aifactory.services import (
    access,
    decisions,
    identity,
    job_queries,
    proposals,
    registry,
    review_standing,
)
from aifactory.services.access_views import ProposalView
from aifactory.services.sessions import SignedIn
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
Short = Annotated[str, Form(max_length=100)]
Comment = Annotated[str, Form(max_length=2000)]


def _queue(
    session: Session, user: SignedIn, now: datetime, status: ProposalStatus
) -> list[ProposalView]:
    return proposals.list_visible(session, user.principal, now, status)


def _criteria(p: ProposalView) -> list[Any]:
    rules = access.mode_of(access.get_call(p.call_id)).peer_review
    return list(rules.criteria) if rules else []


def _failed(
    request: Request, page: str, target: int, errors: FormErrors, extra: dict[str, Any]
) -> Response:
    context = {"target": target, **errors.context(), **extra}
    return render(request, page, context, 422)


# --- reviewers -------------------------------------------------------------------------------


def _review_context(session: Session, user: SignedIn, now: datetime) -> dict[str, Any]:
    me = user.principal.username
    queue = [
        p
        for p in _queue(session, user, now, ProposalStatus.PEER_REVIEW)
        if any(r.reviewer == me for r in p.reviews)
    ]
    return {
        "title": "Reviewer queue",
        "questions": ETHICS_QUESTIONS,
        "queue": [(p, _criteria(p), next(r for r in p.reviews if r.reviewer == me)) for p in queue],
    }


@router.get("/review")
def review_queue(request: Request, session: SessionDep, user: CurrentUser, now: NowDep) -> Response:
    """Reviewers (and admins): proposals assigned to them that are in peer review."""
    require_role(user, Role.REVIEWER)
    return render(request, "review.html", _review_context(session, user, now))


@router.post("/proposals/{proposal_id}/review")
async def review(
    proposal_id: int, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """An assigned reviewer scores every criterion; the service checks assignment and scale."""
    form = await request.form()
    scores: dict[str, Decimal] = {}
    fields = {str(k) for k in form if str(k).startswith("scores.")}
    errors = FormErrors(fields | {"comment"}, prefix=f"p{proposal_id}-")
    for name in sorted(fields):
        value = errors.parse(name, str(form[name]), Decimal)
        errors.require(name, value)
        if value is not None:
            scores[name.removeprefix("scores.")] = value
    comment = str(form.get("comment", ""))[:2000]
    if not errors:
        done = attempt(
            session,
            errors,
            lambda: decisions.review(session, user.principal, proposal_id, scores, now, comment),
        )
        if done is not None:
            return redirect("/review?notice=reviewed")
    context = _review_context(session, user, now)
    for p, criteria, _ in context["queue"]:  # the summary names each score by its criterion
        if p.id == proposal_id:
            errors.labels = {f"scores.{c.id}": c.name for c in criteria} | {"comment": "Comment"}
    context["posted"] = {str(k): str(v) for k, v in form.items()}  # what was typed stays
    return _failed(request, "review.html", proposal_id, errors, context)


# --- operators -------------------------------------------------------------------------------

ASSESS_LABELS = {
    "feasible": "Technically feasible?",
    "gpu_hours": "Award GPU-hours",
    "partition": "Partition",
    "comment": "Comment",
}


def _operate_context(
    session: Session, settings: Settings, user: SignedIn, now: datetime
) -> dict[str, Any]:
    who = user.principal
    factories = [
        f
        for f in registry.list_factories(session)
        if who.is_admin or who.has(Role.FACTORY_OPERATOR, f.id)
    ]
    running = job_queries.list_jobs(session, who, state=JobState.RUNNING, limit=100).jobs
    placed = job_queries.list_jobs(session, who, state=JobState.PLACED, limit=100).jobs
    queue = _queue(session, user, now, ProposalStatus.TECHNICAL_ASSESSMENT)
    partitions = {
        f.name: [f"{s.name}/{p.name}" for s in f.systems for p in s.partitions] for f in factories
    }
    return {
        "title": "Operator queue",
        "queue": queue,
        "partitions": partitions,
        "utilisation": utilisation(session, settings, factories),
        "jobs": [*running, *placed],
    }


@router.get("/operate")
def operate(
    request: Request, session: SessionDep, settings: SettingsDep, user: CurrentUser, now: NowDep
) -> Response:
    """Factory operators (and admins): technical assessments, utilisation, running jobs."""
    require_role(user, Role.FACTORY_OPERATOR)
    return render(request, "operate.html", _operate_context(session, settings, user, now))


@router.post("/proposals/{proposal_id}/assess")
def assess(
    proposal_id: int,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
    now: NowDep,
    feasible: Short = "",
    gpu_hours: Short = "",
    partition: Short = "",
    comment: Comment = "",
) -> Response:
    """The factory's operator rules on feasibility (the service checks scope and FIFO order)."""
    errors = FormErrors(set(ASSESS_LABELS), ASSESS_LABELS, prefix=f"p{proposal_id}-")
    if feasible not in ("yes", "no"):
        errors.add("feasible", "choose feasible or not feasible")
    hours = errors.parse("gpu_hours", gpu_hours, Decimal)
    if not errors:
        done = attempt(
            session,
            errors,
            lambda: decisions.assess(
                session,
                user.principal,
                proposal_id,
                feasible == "yes",
                now,
                hours,
                partition or None,
                comment,
            ),
        )
        if done is not None:
            return redirect("/operate?notice=assessed")
    context = _operate_context(session, settings, user, now)
    context["posted"] = {  # what was typed stays in the form
        "feasible": feasible,
        "gpu_hours": gpu_hours,
        "partition": partition,
        "comment": comment,
    }
    return _failed(request, "operate.html", proposal_id, errors, context)


# --- federation staff ------------------------------------------------------------------------


def _decisions_context(session: Session, user: SignedIn, now: datetime) -> dict[str, Any]:
    review = _queue(session, user, now, ProposalStatus.PEER_REVIEW)
    assessing = [
        p
        for p in _queue(session, user, now, ProposalStatus.TECHNICAL_ASSESSMENT)
        if p.mode in ("LS", "AS")
    ]
    batches: dict[tuple[str, date], list[ProposalView]] = {}
    for p in review:
        if p.cutoff is not None:
            batches.setdefault((p.call_id, p.cutoff), []).append(p)
    standing = {p.id: review_standing.standing(p, now.date()) for p in review}
    reviewers = [
        u.username
        for u in identity.list_users(session)
        if any(r.role == Role.REVIEWER for r in u.roles)
    ]
    return {
        "title": "Decisions",
        "review": review,
        "standing": standing,
        "decidable_ids": [pid for pid, s in standing.items() if s is None or s.decidable],
        "assessing": assessing,
        "batches": sorted(batches.items()),
        "reviewers": reviewers,
        "today": now.date(),
    }


@router.get("/decisions")
def decisions_page(
    request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Federation admins only: assign reviewers, decide proposals and cut-off batches."""
    require_role(user)
    return render(request, "decisions.html", _decisions_context(session, user, now))


@router.post("/proposals/{proposal_id}/reviewers")
def assign(
    proposal_id: int,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    reviewer: Short = "",
) -> Response:
    """Admins assign a reviewer; the service refuses conflicts of interest."""
    errors = FormErrors({"reviewer"})
    errors.require("reviewer", reviewer or None)
    if (
        not errors
        and attempt(
            session,
            errors,
            lambda: decisions.assign_reviewer(session, user.principal, proposal_id, reviewer, now),
        )
        is not None
    ):
        return redirect("/decisions?notice=assigned")
    return _failed(
        request, "decisions.html", proposal_id, errors, _decisions_context(session, user, now)
    )


@router.post("/proposals/{proposal_id}/decision")
def decide(
    proposal_id: int,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    accept: Short = "",
    comment: Comment = "",
) -> Response:
    """Admins decide one proposal after peer review (not before its cut-off)."""
    errors = FormErrors({"accept", "comment"})
    if accept not in ("yes", "no"):
        errors.add("accept", "choose accept or reject")
    if (
        not errors
        and attempt(
            session,
            errors,
            lambda: decisions.decide(
                session, user.principal, proposal_id, accept == "yes", now, comment
            ),
        )
        is not None
    ):
        return redirect("/decisions?notice=decided")
    return _failed(
        request, "decisions.html", proposal_id, errors, _decisions_context(session, user, now)
    )


@router.post("/calls/{call_id}/decisions")
def decide_batch(
    call_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    cutoff: Short = "",
) -> Response:
    """Admins decide a cut-off's batch from the peer review outcome."""
    errors = FormErrors(set())
    when = errors.parse("cutoff", cutoff, date.fromisoformat)
    errors.require("cutoff", when)
    errors.raise_if_any()
    assert when is not None
    result = decisions.decide_cutoff(session, user.principal, call_id, when, now)
    context = _decisions_context(session, user, now)
    context["report"] = review_standing.batch_report(result)  # what was done, never more
    return render(request, "decisions.html", context)
