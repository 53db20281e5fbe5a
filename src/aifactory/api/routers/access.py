"""Access modes, calls, eligibility checks and proposals through their whole lifecycle."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from aifactory.api.access_schemas import (
    AssessmentIn,
    CommentIn,
    CutoffDecisionIn,
    DecisionIn,
    EligibilityCheckIn,
    ProposalCreate,
    ReviewerIn,
    ReviewIn,
)
from aifactory.api.deps import (
    REPLAYED,
    CurrentPrincipal,
    IdempotencyKeyDep,
    NowDep,
    SessionDep,
    SettingsDep,
)
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath
from aifactory.domain.access_modes import AccessMode
from aifactory.domain.clock import as_date
from aifactory.domain.enums import ProposalStatus
from aifactory.errors import Invalid, NotFound
from aifactory.services import access, attachments, decisions, idempotency, proposals
from aifactory.services.access_views import (
    AttachmentView,
    CallView,
    DecisionBatchView,
    EligibilityView,
    ProposalView,
)
from aifactory.services.permissions import Action, authorize

router = APIRouter(tags=["access"], responses=ERROR_RESPONSES)


@router.get("/access-modes")
def list_access_modes(who: CurrentPrincipal) -> list[AccessMode]:
    authorize(who, Action.READ_REGISTRY)
    return access.modes()


@router.get("/calls")
def list_calls(
    who: CurrentPrincipal,
    now: NowDep,
    _: SessionDep,  # opening it brings in the calls of factories added since
    mode: Annotated[str | None, Query(max_length=2)] = None,
    factory: Annotated[str | None, Query(max_length=100)] = None,
    open_only: bool = False,
) -> list[CallView]:
    authorize(who, Action.READ_REGISTRY)
    return access.list_calls(as_date(now), mode, factory, open_only)


@router.get("/calls/{call_id}")
def get_call(call_id: str, who: CurrentPrincipal, now: NowDep, _: SessionDep) -> CallView:
    authorize(who, Action.READ_REGISTRY)
    call = access.catalogue()[1].get(call_id)
    if call is None:
        raise NotFound(f"call {call_id!r} not found")
    return access.call_view(call, as_date(now))


@router.post("/calls/{call_id}/decisions")
def decide_cutoff(
    call_id: str, body: CutoffDecisionIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> DecisionBatchView:
    return decisions.decide_cutoff(session, who, call_id, body.cutoff, now)


@router.post("/eligibility/check")
def check_eligibility(
    body: EligibilityCheckIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> EligibilityView:
    proposals.organisation_of(session, who, body.organisation)  # members (and admins) only
    result = access.check(
        session,
        access.get_call(body.call_id),
        body.organisation,
        body.research_kind,
        body.start_date or as_date(now),
        body.duration_months,
        body.pi_contract_end,
    )
    return access.eligibility_view(result)


@router.post("/proposals", status_code=201, responses=REPLAYED)
def create_proposal(
    body: ProposalCreate,
    response: Response,
    session: SessionDep,
    who: CurrentPrincipal,
    now: NowDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> ProposalView:
    """Create a draft; with an `Idempotency-Key` already used for it, 201 with the original."""
    data = body.as_input()
    view, replayed = idempotency.once(
        session,
        who.user_id,
        idempotency.PROPOSALS,
        idempotency_key,
        body.model_dump(mode="json"),
        now,
        lambda: proposals.create(session, who, data, now),
        lambda proposal_id: proposals.get(session, who, proposal_id, now),
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return view


@router.get("/proposals")
def list_proposals(
    session: SessionDep, who: CurrentPrincipal, now: NowDep, status: ProposalStatus | None = None
) -> list[ProposalView]:
    return proposals.list_visible(session, who, now, status)


@router.get("/proposals/{proposal_id}")
def get_proposal(
    proposal_id: IdPath, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return proposals.get(session, who, proposal_id, now)


@router.put("/proposals/{proposal_id}")
def update_proposal(
    proposal_id: IdPath,
    body: ProposalCreate,
    session: SessionDep,
    who: CurrentPrincipal,
    now: NowDep,
) -> ProposalView:
    """Replace what a draft says, sections and resource rows included (its applicant only)."""
    return proposals.update(session, who, proposal_id, body.as_input(), now)


@router.post("/proposals/{proposal_id}/attachments", status_code=201)
async def attach(
    proposal_id: IdPath,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
    now: NowDep,
) -> AttachmentView:
    """Attach a PDF (multipart field ``file``) to a draft: checked by content and size.

    Async only to read the upload; storing and hashing it run in the threadpool."""
    form = await request.form(max_files=1, max_fields=5)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise Invalid.field("file", "required", "send the PDF as the multipart field 'file'")
    return await run_in_threadpool(
        attachments.add,
        session,
        who,
        proposal_id,
        upload.filename or "",
        upload.file,
        settings.data_dir,
        settings.attachment_max_bytes,
        now,
    )


@router.get("/proposals/{proposal_id}/attachments")
def list_attachments(
    proposal_id: IdPath, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> list[AttachmentView]:
    return attachments.list_for(session, who, proposal_id, now)


@router.get(
    "/proposals/{proposal_id}/attachments/{attachment_id}",
    response_class=FileResponse,
    responses={200: {"content": {"application/pdf": {}}}},
)
def download_attachment(
    proposal_id: IdPath,
    attachment_id: IdPath,
    session: SessionDep,
    settings: SettingsDep,
    who: CurrentPrincipal,
) -> FileResponse:
    """The PDF, for whoever may see the proposal (everyone else: 404)."""
    path, name = attachments.open_file(session, who, proposal_id, attachment_id, settings.data_dir)
    return FileResponse(path, media_type="application/pdf", filename=name)


@router.delete("/proposals/{proposal_id}/attachments/{attachment_id}", status_code=204)
def delete_attachment(
    proposal_id: IdPath, attachment_id: IdPath, session: SessionDep, who: CurrentPrincipal
) -> None:
    """Remove an attachment from a draft (its applicant only)."""
    attachments.delete(session, who, proposal_id, attachment_id)


@router.post("/proposals/{proposal_id}/submit")
def submit_proposal(
    proposal_id: IdPath, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return proposals.submit(session, who, proposal_id, now)


@router.post("/proposals/{proposal_id}/withdraw")
def withdraw_proposal(
    proposal_id: IdPath, body: CommentIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return proposals.withdraw(session, who, proposal_id, now, body.comment)


@router.post("/proposals/{proposal_id}/assessment")
def assess_proposal(
    proposal_id: IdPath, body: AssessmentIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return decisions.assess(
        session, who, proposal_id, body.feasible, now, body.gpu_hours, body.partition, body.comment
    )


@router.post("/proposals/{proposal_id}/reviewers")
def assign_reviewer(
    proposal_id: IdPath, body: ReviewerIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return decisions.assign_reviewer(session, who, proposal_id, body.username, now)


@router.post("/proposals/{proposal_id}/reviews")
def review_proposal(
    proposal_id: IdPath, body: ReviewIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return decisions.review(session, who, proposal_id, body.scores, now, body.comment)


@router.post("/proposals/{proposal_id}/decision")
def decide_proposal(
    proposal_id: IdPath, body: DecisionIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> ProposalView:
    return decisions.decide(session, who, proposal_id, body.accept, now, body.comment)
