"""The apply wizard (live eligibility, the service-level deadline) and the applicant's proposals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.calls import effective_service_level, open_period
from aifactory.domain.clock import as_date, service_deadline
from aifactory.domain.enums import ResearchKind
from aifactory.errors import AIFactoryError
from aifactory.portal.web import CurrentUser, FormErrors, PortalRoute, attempt, redirect, render
from aifactory.services import access, identity, proposals, registry
from aifactory.services.access_views import EligibilityView
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)
FIELDS = {
    "title",
    "summary",
    "organisation",
    "research_kind",
    "gpu_hours",
    "duration_months",
    "start_date",
    "pi_contract_end",
    "partition",
}
Text = Annotated[str, Form(max_length=200)]


@dataclass
class ApplyForm:
    """The wizard's fields as typed (strings, so a bad value is shown back as typed)."""

    title: str = ""
    summary: str = ""
    organisation: str = ""
    research_kind: str = "open_rd"
    gpu_hours: str = ""
    duration_months: str = ""
    start_date: str = ""
    pi_contract_end: str = ""
    partition: str = ""


def _form(
    title: Text = "",
    summary: Annotated[str, Form(max_length=4000)] = "",
    organisation: Text = "",
    research_kind: Text = "open_rd",
    gpu_hours: Text = "",
    duration_months: Text = "",
    start_date: Text = "",
    pi_contract_end: Text = "",
    partition: Text = "",
) -> ApplyForm:
    return ApplyForm(
        title,
        summary,
        organisation,
        research_kind,
        gpu_hours,
        duration_months,
        start_date,
        pi_contract_end,
        partition,
    )


def expected_deadline(call_id: str, now: datetime) -> tuple[date | None, date | None, str]:
    """(decision due, cut-off, problem) if the proposal were submitted now."""
    call = access.get_call(call_id)
    mode = access.mode_of(call)
    try:
        cutoff, _ = open_period(call, mode, as_date(now))
    except AIFactoryError as exc:
        return None, None, exc.message
    level = effective_service_level(call, mode)
    if level is None:
        return None, cutoff, ""
    return service_deadline(level, now, cutoff, access.catalogue()[2]), cutoff, ""


def _partitions(session: Session, factory: str | None) -> list[str]:
    if factory is None:
        return []
    view = registry.get_factory(session, factory)
    return [f"{s.name}/{p.name}" for s in view.systems for p in s.partitions]


def _kind(value: str) -> ResearchKind:
    return ResearchKind(value)


def _check(
    session: Session,
    user: SignedIn,
    call_id: str,
    form: ApplyForm,
    errors: FormErrors,
    now: datetime,
) -> EligibilityView | None:
    """Run every eligibility rule for what the form says so far (nothing is stored)."""
    kind = errors.parse("research_kind", form.research_kind, _kind)
    start = errors.parse("start_date", form.start_date, date.fromisoformat)
    months = errors.parse("duration_months", form.duration_months, int)
    contract = errors.parse("pi_contract_end", form.pi_contract_end, date.fromisoformat)
    if not form.organisation or kind is None:
        return None
    try:
        proposals.organisation_of(session, user.principal, form.organisation)
        result = access.check(
            session,
            access.get_call(call_id),
            form.organisation,
            kind,
            start or as_date(now),
            months,
            contract,
        )
    except AIFactoryError as exc:
        errors.add("organisation", exc.message)
        return None
    return access.eligibility_view(result)


def _page(
    request: Request,
    session: Session,
    user: SignedIn,
    call_id: str,
    form: ApplyForm,
    now: datetime,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    errors = errors or FormErrors(FIELDS)
    call = access.call_view(access.get_call(call_id), as_date(now))
    due, cutoff, closed = expected_deadline(call_id, now)
    context: dict[str, Any] = {
        "title": f"Apply: {call.title}",
        "call": call,
        "form": form,
        "organisations": identity.get_user(session, user.principal.username).organisations,
        "partitions": _partitions(session, call.factory),
        "kinds": list(ResearchKind),
        "deadline": due,
        "cutoff": cutoff,
        "closed": closed,
        "eligibility": _check(session, user, call_id, form, errors, now),
        **errors.context(),
    }
    return render(request, "apply.html", context, status)


@router.get("/calls/{call_id}/apply")
def apply_form(
    call_id: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Signed in: the wizard; creating a proposal checks the role (applicant and friends)."""
    orgs = identity.get_user(session, user.principal.username).organisations
    return _page(request, session, user, call_id, ApplyForm(organisation=next(iter(orgs), "")), now)


@router.post("/calls/{call_id}/check")
def check_eligibility(
    call_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    form: Annotated[ApplyForm, Depends(_form)],
) -> Response:
    """Signed in, members of the organisation only: every rule with pass/fail and reason."""
    errors = FormErrors(FIELDS)
    result = _check(session, user, call_id, form, errors, now)
    if request.headers.get("x-fragment") == "eligibility":
        context = {"eligibility": result, **errors.context()}
        return render(request, "_eligibility.html", context)
    return _page(request, session, user, call_id, form, now, errors)


def _proposal_input(call_id: str, form: ApplyForm, errors: FormErrors) -> proposals.ProposalInput:
    if not form.title.strip():
        errors.add("title", "give the proposal a title")
    kind = errors.parse("research_kind", form.research_kind, _kind)
    return proposals.ProposalInput(
        call_id=call_id,
        title=form.title.strip(),
        organisation=form.organisation,
        research_kind=kind or ResearchKind.OPEN_RD,
        summary=form.summary.strip(),
        gpu_hours=errors.parse("gpu_hours", form.gpu_hours, Decimal),
        duration_months=errors.parse("duration_months", form.duration_months, int),
        start_date=errors.parse("start_date", form.start_date, date.fromisoformat),
        pi_contract_end=errors.parse("pi_contract_end", form.pi_contract_end, date.fromisoformat),
        partition=form.partition or None,
    )


@router.post("/calls/{call_id}/apply")
def apply(
    call_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    form: Annotated[ApplyForm, Depends(_form)],
) -> Response:
    """Create the proposal and submit it in one step; bad input leaves nothing stored."""
    errors = FormErrors(FIELDS)
    data = _proposal_input(call_id, form, errors)
    if errors:
        return _page(request, session, user, call_id, form, now, errors, 422)

    def create_and_submit() -> int:
        draft = proposals.create(session, user.principal, data, now)
        return proposals.submit(session, user.principal, draft.id, now).id

    proposal_id = attempt(session, errors, create_and_submit)
    if proposal_id is None:
        return _page(request, session, user, call_id, form, now, errors, 422)
    return redirect(f"/proposals/{proposal_id}?notice=submitted")


@router.get("/proposals")
def my_proposals(request: Request, session: SessionDep, user: CurrentUser, now: NowDep) -> Response:
    """Signed in: the proposals this user applied with (the service filters what is visible)."""
    mine = [
        p
        for p in proposals.list_visible(session, user.principal, now)
        if p.applicant == user.principal.username
    ]
    return render(request, "proposals.html", {"title": "My proposals", "proposals": mine})


@router.get("/proposals/{proposal_id}")
def proposal_page(
    proposal_id: int, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Signed in: the service refuses (403) anyone who may not see this proposal."""
    proposal = proposals.get(session, user.principal, proposal_id, now)
    mine = proposal.applicant == user.principal.username
    context = {"title": f"Proposal {proposal.id}", "p": proposal, "mine": mine}
    return render(request, "proposal.html", context)


@router.post("/proposals/{proposal_id}/withdraw")
def withdraw(
    proposal_id: int,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    comment: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """The applicant withdraws; the service checks ownership and the state machine."""
    proposals.withdraw(session, user.principal, proposal_id, now, comment)
    return redirect(f"/proposals/{proposal_id}?notice=withdrawn")
