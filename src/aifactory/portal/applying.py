"""The apply wizard (live eligibility, the service-level deadline) and the applicant's proposals."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.calls import effective_service_level, open_period
from aifactory.domain.clock import as_date, service_deadline
from aifactory.domain.enums import ResearchKind
from aifactory.domain.proposal_sections import ETHICS_QUESTIONS, required
from aifactory.errors import AIFactoryError
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.proposal_form import ProposalForm, to_input
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import access, attachments, identity, proposals, registry
from aifactory.services.access_views import EligibilityView
from aifactory.services.sessions import SignedIn
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
#: Rules about the organisation itself: failing one, no answer on the form can help.
ORGANISATION_RULES = frozenset({"country_status", "organisation_type", "sme_definition"})


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
    form: ProposalForm,
    errors: FormErrors,
    now: datetime,
) -> EligibilityView | None:
    """Run every eligibility rule for what the form says so far (nothing is stored)."""
    scratch = FormErrors(set(errors.fields))  # typing mistakes are reported by the form itself
    kind = scratch.parse("research_kind", form.get("research_kind"), _kind)
    start = scratch.parse("start_date", form.get("start_date"), date.fromisoformat)
    months = scratch.parse("duration_months", form.get("duration_months"), int)
    contract = scratch.parse("pi_contract_end", form.get("pi_contract_end"), date.fromisoformat)
    organisation = form.get("organisation")
    if not organisation or kind is None:
        return None
    try:
        proposals.organisation_of(session, user.principal, organisation)
        result = access.check(
            session,
            access.get_call(call_id),
            organisation,
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
    form: ProposalForm,
    now: datetime,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    errors = errors or form.errors()
    call = access.call_view(access.get_call(call_id), as_date(now))
    due, cutoff, closed = expected_deadline(call_id, now)
    eligibility = _check(session, user, call_id, form, errors, now)
    blocked = [
        r for r in (eligibility.rules if eligibility else []) if r.rule in ORGANISATION_RULES
    ]
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
        "eligibility": eligibility,
        "blocked": blocked if any(not r.passed for r in blocked) else [],
        "required": set(required(call.mode)),
        "questions": ETHICS_QUESTIONS,
        "rows": form.rows,
        "max_mib": _settings(request).attachment_max_bytes // 2**20,
        **errors.context(),
    }
    return render(request, "apply.html", context, status)


@router.get("/calls/{call_id}/apply")
def apply_form(
    call_id: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    organisation: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Signed in: eligibility of the organisation first, then the full form."""
    if access.get_call(call_id).mode == "HC":  # a hosting proposal describes a factory
        return redirect(f"/calls/{call_id}/hosting")
    orgs = identity.get_user(session, user.principal.username).organisations
    chosen = organisation if organisation in orgs else next(iter(orgs), "")
    form = ProposalForm({"organisation": chosen, "research_kind": "open_rd"})
    return _page(request, session, user, call_id, form, now)


@router.post("/calls/{call_id}/check")
async def check_eligibility(
    call_id: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Signed in, members of the organisation only: every rule with pass/fail and reason.

    Async only to read the body; the database work runs in the threadpool (``_checked``)."""
    form = ProposalForm.read(await request.form())
    return await run_in_threadpool(_checked, request, session, user, call_id, form, now)


def _checked(
    request: Request,
    session: Session,
    user: SignedIn,
    call_id: str,
    form: ProposalForm,
    now: datetime,
) -> Response:
    errors = form.errors()
    if request.headers.get("x-fragment") == "eligibility":
        result = _check(session, user, call_id, form, errors, now)
        context = {"eligibility": result, **errors.context()}
        return render(request, "_eligibility.html", context)
    return _page(request, session, user, call_id, form, now, errors)


@router.post("/calls/{call_id}/apply")
async def apply(
    call_id: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Create the proposal, attach its PDFs and submit it in one step; bad input leaves
    nothing stored and shows every problem beside its field ("more" only adds a row).

    Async only to read the body (uploads included); storing, hashing the PDFs and rendering
    run in the threadpool (``_applied``), off the event loop."""
    raw = await request.form()
    form = ProposalForm.read(raw)
    files = [f for f in raw.getlist("attachments") if isinstance(f, UploadFile) and f.filename]
    return await run_in_threadpool(_applied, request, session, user, call_id, form, files, now)


def _applied(
    request: Request,
    session: Session,
    user: SignedIn,
    call_id: str,
    form: ProposalForm,
    files: list[UploadFile],
    now: datetime,
) -> Response:
    if form.more:
        return _page(request, session, user, call_id, form, now)
    errors = form.errors()
    mode = access.get_call(call_id).mode
    data = to_input(call_id, mode, form, errors)
    if errors:
        _files_again(errors, files)
        return _page(request, session, user, call_id, form, now, errors, 422)
    settings = _settings(request)

    def create_and_submit() -> int:
        draft = proposals.create(session, user.principal, data, now)
        for upload in files:
            attachments.add(
                session,
                user.principal,
                draft.id,
                upload.filename or "",
                upload.file,
                settings.data_dir,
                settings.attachment_max_bytes,
                now,
            )
        return proposals.submit(session, user.principal, draft.id, now).id

    proposal_id = attempt(session, errors, create_and_submit)
    if proposal_id is None:
        _files_again(errors, files)
        return _page(request, session, user, call_id, form, now, errors, 422)
    return redirect(f"/proposals/{proposal_id}?notice=submitted")


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _files_again(errors: FormErrors, files: list[UploadFile]) -> None:
    """A browser cannot fill a file input again: say which files to choose once more."""
    if files and "attachments" not in errors.by_field:
        names = ", ".join(f.filename or "" for f in files)
        errors.add("attachments", f"Attachments: choose {names} again (files are not kept)")


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
    context = {
        "title": f"Proposal {proposal.id}",
        "p": proposal,
        "mine": mine,
        "questions": ETHICS_QUESTIONS,
    }
    return render(request, "proposal.html", context)


@router.get("/proposals/{proposal_id}/attachments/{attachment_id}")
def attachment(
    proposal_id: int, attachment_id: int, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """The PDF, for whoever may see the proposal (the service answers 404 to anyone else)."""
    data_dir = _settings(request).data_dir
    path, name = attachments.open_file(
        session, user.principal, proposal_id, attachment_id, data_dir
    )
    return FileResponse(path, media_type="application/pdf", filename=name)


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
