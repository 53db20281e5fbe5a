"""The audit log: every award, assessment, decision, role grant, token and sign-in, appended.

Services call ``record`` inside the transaction that does the act, so the entry commits with
it or not at all (a refused credential is recorded and committed before the refusal is raised,
see ``services/throttle.py``). The database refuses UPDATE and
DELETE on the table (migration 0006). The caller's network address comes from ``origin``, which
the web layer sets per request.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import AuditEvent
from aifactory.db.types import utcnow
from aifactory.errors import Forbidden
from aifactory.services.permissions import Principal

#: The network address of the request being served ("" outside a request: CLI, controllers).
origin: ContextVar[str] = ContextVar("aif_origin", default="")


class AuditAction(StrEnum):
    LOGIN = "login"
    TOKEN_REJECTED = "token_rejected"  # noqa: S105 (an action name)
    LOCKOUT = "lockout"
    UNLOCK = "unlock"
    TOKEN_MINT = "token_mint"  # noqa: S105
    TOKEN_REVOKE = "token_revoke"  # noqa: S105
    PASSWORD_SET = "password_set"  # noqa: S105
    USER_CREATE = "user_create"
    ROLE_GRANT = "role_grant"
    ROLE_REVOKE = "role_revoke"
    CLAIM_RULE_ADD = "claim_rule_add"
    CLAIM_RULE_REMOVE = "claim_rule_remove"
    ORGANISATION_HOME_DOMAIN = "organisation_home_domain"
    MEMBERSHIP_ADD = "membership_add"
    SITE_ACCOUNT_SET = "site_account_set"
    SITE_ACCOUNT_REMOVE = "site_account_remove"
    ASSESSMENT = "assessment"
    REVIEWER_ASSIGN = "reviewer_assign"
    REVIEW = "review"
    DECISION = "decision"
    AWARD = "award"
    SIGNUP = "signup"
    ORGANISATION_CREATE = "organisation_create"
    ORGANISATION_UPDATE = "organisation_update"
    INVITATION_CREATE = "invitation_create"
    INVITATION_REVOKE = "invitation_revoke"
    INVITATION_ACCEPT = "invitation_accept"
    MEMBER_REMOVE = "member_remove"
    FACTORY_STATUS = "factory_status"
    FACTORY_GROWTH = "factory_growth"


class AuditView(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    outcome: str
    address: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditView]
    next_before: int | None


def record(
    session: Session,
    actor: str,
    action: AuditAction,
    obj: tuple[str, object] = ("", ""),
    outcome: str = "ok",
    **detail: Any,
) -> None:
    """Append one entry in the caller's transaction."""
    session.add(
        AuditEvent(
            at=utcnow(),
            actor=actor[:64],
            action=action,
            object_type=obj[0],
            object_id=str(obj[1])[:128],
            outcome=outcome,
            address=origin.get()[:64],
            detail={k: _jsonable(v) for k, v in detail.items()},
        )
    )


def query(
    session: Session,
    who: Principal,
    *,
    actor: str | None = None,
    action: str | None = None,
    object_type: str | None = None,
    object_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before: int | None = None,
) -> AuditPage:
    """Newest first, filtered; federation admins only. ``before`` pages by id."""
    if not who.is_admin:
        raise Forbidden("only federation admins read the audit log")
    filters = {
        AuditEvent.actor: actor,
        AuditEvent.action: action,
        AuditEvent.object_type: object_type,
        AuditEvent.object_id: object_id,
    }
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    if before is not None:
        stmt = stmt.where(AuditEvent.id < before)
    rows = list(session.scalars(stmt))
    more = len(rows) > limit
    events = [AuditView.model_validate(r, from_attributes=True) for r in rows[:limit]]
    return AuditPage(events=events, next_before=events[-1].id if more else None)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)
