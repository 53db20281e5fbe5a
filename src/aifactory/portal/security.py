"""The audit page: who did what and when, failed sign-ins and lockouts (federation admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SessionDep
from aifactory.api.params import IdQuery
from aifactory.domain.enums import Role
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render, require_role
from aifactory.services import audit, throttle
from aifactory.services.audit import AuditAction

router = APIRouter(route_class=PortalRoute)
Filter = Annotated[str, Query(max_length=64)]


@router.get("/audit")
def audit_page(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    actor: Filter = "",
    action: Filter = "",
    before: IdQuery = None,
) -> Response:
    """Federation admins: the audit log (filtered by actor and action) and current lockouts."""
    require_role(user, Role.FEDERATION_ADMIN)
    page = audit.query(
        session,
        user.principal,
        actor=actor or None,
        action=action or None,
        limit=100,
        before=before,
    )
    context = {
        "title": "Audit log",
        "page": page,
        "actor": actor,
        "action": action,
        "actions": [a.value for a in AuditAction],
        "lockouts": [lock for lock in throttle.locked(session, now) if lock.locked_now],
    }
    return render(request, "audit.html", context)


@router.post("/audit/unlock")
def unlock(
    session: SessionDep, user: CurrentUser, key: Annotated[str, Form(max_length=160)]
) -> Response:
    """Federation admins: lift a lockout."""
    require_role(user, Role.FEDERATION_ADMIN)
    throttle.unlock(session, user.principal.username, key)
    return redirect("/audit")
