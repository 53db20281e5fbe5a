"""The audit log and sign-in lockouts: federation admins only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import DateTimeQuery, IdQuery
from aifactory.services import audit, throttle
from aifactory.services.audit import AuditPage
from aifactory.services.permissions import Action, authorize
from aifactory.services.throttle import LockoutView

router = APIRouter(tags=["audit"], responses=ERROR_RESPONSES)
Text = Annotated[str | None, Query(max_length=128)]


@router.get("/audit")
def audit_log(
    session: SessionDep,
    who: CurrentPrincipal,
    actor: Text = None,
    action: Text = None,
    object_type: Text = None,
    object_id: Text = None,
    since: DateTimeQuery = None,
    until: DateTimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    before: IdQuery = None,
) -> AuditPage:
    """Newest first: awards, assessments, decisions, role grants, tokens, sign-ins (failed ones
    too) and lockouts. Page with ``before=next_before``."""
    return audit.query(
        session,
        who,
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
        limit=limit,
        before=before,
    )


@router.get("/lockouts")
def lockouts(session: SessionDep, who: CurrentPrincipal, now: NowDep) -> list[LockoutView]:
    """Accounts (``user:NAME``) and addresses (``addr:IP``) with failed attempts or a lock."""
    authorize(who, Action.MANAGE_IDENTITY)
    return throttle.locked(session, now)


@router.delete("/lockouts/{key}")
def unlock(
    key: Annotated[str, Path(max_length=160)], session: SessionDep, who: CurrentPrincipal
) -> LockoutView:
    """Lift a lock and forget its failures."""
    authorize(who, Action.MANAGE_IDENTITY)
    return throttle.unlock(session, who.username, key)
