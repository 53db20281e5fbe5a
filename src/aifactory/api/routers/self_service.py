"""Self-service: one's organisations, and a project's invitations and members (its PIs)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath
from aifactory.domain.enums import OrganisationType
from aifactory.services import invitations, organisations
from aifactory.services.access_views import MemberView
from aifactory.services.permissions import Action, authorize
from aifactory.services.self_service_views import (
    EnterpriseLink,
    InvitationView,
    NewInvitation,
    OrganisationDetail,
)
from aifactory.settings import SInt

router = APIRouter(tags=["self-service"], responses=ERROR_RESPONSES)
REQUIRED = frozenset({"name", "type", "country_code", "enterprise_links"})


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrganisationPatch(_In):
    """Only the fields given change; ``enterprise_links`` replaces the whole list."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    type: OrganisationType | None = None
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    staff_headcount: SInt | None = Field(default=None, ge=0, le=10_000_000)
    annual_turnover_eur: SInt | None = Field(default=None, ge=0, le=10**13)
    balance_sheet_eur: SInt | None = Field(default=None, ge=0, le=10**13)
    enterprise_links: list[EnterpriseLink] | None = Field(default=None, max_length=50)


class InvitationIn(_In):
    email: str = Field(max_length=254, pattern=invitations.EMAIL.pattern)


class AcceptIn(_In):
    token: str = Field(min_length=8, max_length=200)


@router.get("/organisations/{org_id}")
def get_organisation(
    org_id: IdPath, session: SessionDep, who: CurrentPrincipal
) -> OrganisationDetail:
    """Members of the organisation and federation admins; to others it is unknown."""
    authorize(who, Action.READ_SELF)
    return organisations.get(session, who, org_id)


@router.patch("/organisations/{org_id}")
def update_organisation(
    org_id: IdPath, body: OrganisationPatch, session: SessionDep, who: CurrentPrincipal
) -> OrganisationDetail:
    """Members of the organisation and federation admins change its facts."""
    authorize(who, Action.READ_SELF)
    changes = {
        k: v
        for k, v in body.model_dump(exclude_unset=True).items()
        if v is not None or k not in REQUIRED  # null clears a figure, never a required field
    }
    return organisations.update(session, who, org_id, changes)


@router.post("/projects/{code}/invitations", status_code=201)
def invite(
    code: str,
    body: InvitationIn,
    request: Request,
    session: SessionDep,
    who: CurrentPrincipal,
    now: NowDep,
) -> NewInvitation:
    """A PI of the project invites someone by e-mail; the link is returned this once."""
    authorize(who, Action.READ_SELF)  # the service checks the project's PIs
    made = invitations.invite(session, who, code, body.email, now)
    made.url = str(request.base_url).rstrip("/") + made.path
    return made


@router.get("/projects/{code}/invitations")
def list_invitations(
    code: str, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> list[InvitationView]:
    """The project's invitations, newest first (its PIs and admins)."""
    authorize(who, Action.READ_SELF)
    return invitations.list_for(session, who, code, now)


@router.delete("/projects/{code}/invitations/{invitation_id}")
def revoke_invitation(
    code: str, invitation_id: IdPath, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> InvitationView:
    authorize(who, Action.READ_SELF)
    return invitations.revoke(session, who, code, invitation_id, now)


@router.post("/invitations/accept")
def accept_invitation(
    body: AcceptIn, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> InvitationView:
    """Join a project with an invitation's token (whoever holds the link)."""
    authorize(who, Action.READ_SELF)
    return invitations.accept(session, who, body.token, now)


@router.delete("/projects/{code}/members/{username}")
def remove_member(
    code: str, username: str, session: SessionDep, who: CurrentPrincipal
) -> list[MemberView]:
    """A PI removes a member (not the project's last PI); returns the members left."""
    authorize(who, Action.READ_SELF)
    return invitations.remove_member(session, who, code, username)
