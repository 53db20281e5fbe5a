"""A project's members and invitations (its PIs), and the page an invitation link opens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep
from aifactory.errors import NotFound
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.web import CurrentUser, MaybeUser, PortalRoute, redirect, render
from aifactory.services import invitations, projects
from aifactory.services.self_service_views import InvitationStatus, NewInvitation
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)


def _members_page(
    request: Request,
    session: Session,
    user: SignedIn,
    code: str,
    now: datetime,
    made: NewInvitation | None = None,
    errors: FormErrors | None = None,
    email: str = "",
    status: int = 200,
) -> Response:
    project = projects.get_project(session, user.principal, code)
    pi = user.principal.is_admin or any(
        m.username == user.principal.username and m.role == "pi" for m in project.members
    )
    listed = invitations.list_for(session, user.principal, code, now) if pi else []
    context: dict[str, Any] = {
        "title": f"Members of {code}",
        "project": project,
        "manage": pi,
        "pending": [i for i in listed if i.status == InvitationStatus.PENDING],
        "past": [i for i in listed if i.status != InvitationStatus.PENDING][:20],
        "made": made,
        "link": str(request.base_url).rstrip("/") + made.path if made else "",
        "email": email,
        **(errors or FormErrors({"email"})).context(),
    }
    return render(request, "members.html", context, status)


@router.get("/projects/{code}/members")
def members(
    code: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Members of the project see who belongs; its PIs also invite, revoke and remove."""
    return _members_page(request, session, user, code, now)


@router.post("/projects/{code}/invitations")
def invite(
    code: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    email: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    """A PI invites by e-mail; the link is shown on the page this once, to copy."""
    errors = FormErrors({"email"})
    made = attempt(
        session, errors, lambda: invitations.invite(session, user.principal, code, email, now)
    )
    if made is None:
        return _members_page(request, session, user, code, now, None, errors, email, 422)
    return _members_page(request, session, user, code, now, made, status=201)


@router.post("/projects/{code}/invitations/{invitation_id}/revoke")
def revoke(
    code: str, invitation_id: int, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    invitations.revoke(session, user.principal, code, invitation_id, now)
    return redirect(f"/projects/{code}/members?notice=invitation_revoked")


@router.post("/projects/{code}/members/{username}/remove")
def remove(code: str, username: str, session: SessionDep, user: CurrentUser) -> Response:
    invitations.remove_member(session, user.principal, code, username)
    return redirect(f"/projects/{code}/members?notice=member_removed")


@router.get("/invitations/{token}")
def invitation(
    token: str, request: Request, session: SessionDep, user: MaybeUser, now: NowDep
) -> Response:
    """Public: what the link invites to; signed out, a way to sign in or up and come back."""
    try:
        view = invitations.lookup(session, token, now)
    except NotFound:
        view = None
    context = {
        "title": "Invitation" if view is None else f"Join project {view.project}",
        "invitation": view,
        "token": token,
        "here": request.url.path,
    }
    status = 404 if view is None else 200 if view.status == InvitationStatus.PENDING else 410
    return render(request, "invitation.html", context, status)


@router.post("/invitations/{token}/accept")
def accept(token: str, session: SessionDep, user: CurrentUser, now: NowDep) -> Response:
    """Signed in: join the project (the link is used up)."""
    view = invitations.accept(session, user.principal, token, now)
    return redirect(f"/projects/{view.project}?notice=joined")
