"""Claim-to-role rules: what a federated sign-in's claims give a person.

A rule names a claim (``eduperson_entitlement``), a value (exact, or a prefix ending with ``*``)
and a role (a factory operator's with its factory). At every federated sign-in the roles the
matching rules give are granted, marked as coming from rules; such grants whose rules no longer
match are taken away. Roles granted by hand are never touched. No rule grants
``federation_admin`` (claims may come from what a person controls): admins are made by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import ClaimRule, Factory, RoleGrant, User
from aifactory.domain.enums import Role
from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.services import audit
from aifactory.services.audit import AuditAction
from aifactory.services.claim_rule_views import ClaimRuleIn, ClaimRuleView
from aifactory.services.permissions import Action, Principal, authorize
from aifactory.services.token_cache import TOKENS


def list_rules(session: Session, who: Principal) -> list[ClaimRuleView]:
    authorize(who, Action.MANAGE_IDENTITY)
    rows = session.scalars(select(ClaimRule).order_by(ClaimRule.id))
    return [_view(session, r) for r in rows]


def add_rule(session: Session, who: Principal, body: ClaimRuleIn) -> ClaimRuleView:
    authorize(who, Action.MANAGE_IDENTITY)
    if body.role == Role.FEDERATION_ADMIN:
        msg = "federation_admin is granted by hand only, never from a provider's claims"
        raise Invalid.field("role", "not_federation_admin", msg)
    if (body.role == Role.FACTORY_OPERATOR) != (body.factory is not None):
        msg = "factory_operator needs a factory; other roles take none"
        raise Invalid.field("factory", "operator_scope", msg)
    if body.value == "*":
        raise Invalid.field("value", "not_everyone", "a rule must not match every value")
    factory_id = _factory_id(session, body.factory) if body.factory else None
    same = select(ClaimRule.id).where(
        ClaimRule.claim == body.claim,
        ClaimRule.value == body.value,
        ClaimRule.role == body.role,
        ClaimRule.factory_id.is_(None)
        if factory_id is None
        else ClaimRule.factory_id == factory_id,
    )
    if session.scalar(same) is not None:
        raise Conflict("the same rule already exists")
    row = ClaimRule(
        claim=body.claim,
        value=body.value,
        role=body.role,
        factory_id=factory_id,
        created_by=who.username,
    )
    session.add(row)
    session.flush()
    detail: dict[str, Any] = {
        "claim": body.claim,
        "value": body.value,
        "role": body.role,
        "factory": body.factory,
    }
    audit.record(
        session, who.username, AuditAction.CLAIM_RULE_ADD, ("claim_rule", row.id), **detail
    )
    return _view(session, row)


def remove_rule(session: Session, who: Principal, rule_id: int) -> ClaimRuleView:
    """Delete a rule; the roles it gave go at each person's next federated sign-in."""
    authorize(who, Action.MANAGE_IDENTITY)
    row = session.get(ClaimRule, rule_id)
    if row is None:
        raise NotFound(f"claim rule {rule_id} not found")
    view = _view(session, row)
    session.delete(row)
    session.flush()
    audit.record(session, who.username, AuditAction.CLAIM_RULE_REMOVE, ("claim_rule", rule_id))
    return view


def matches(rule: ClaimRule, claims: dict[str, Any]) -> bool:
    """Whether one of the claim's values (a string or a list of them) fits the rule's value."""
    raw = claims.get(rule.claim)
    values: Iterable[Any] = raw if isinstance(raw, list) else [raw]
    if rule.value.endswith("*"):
        prefix = rule.value[:-1]
        return any(isinstance(v, str) and v.startswith(prefix) for v in values)
    return any(isinstance(v, str | int | bool) and str(v) == rule.value for v in values)


def apply(session: Session, user: User, claims: dict[str, Any], actor: str) -> None:
    """Grant what the matching rules give; take away rule grants no rule gives any more."""
    rules = session.scalars(select(ClaimRule).where(ClaimRule.role != Role.FEDERATION_ADMIN))
    wanted = {(r.role, r.factory_id) for r in rules if matches(r, claims)}
    held = {(g.role, g.factory_id): g for g in user.roles}
    changed = False
    for grant in list(user.roles):
        if grant.from_rules and (grant.role, grant.factory_id) not in wanted:
            user.roles.remove(grant)
            _audit(session, actor, AuditAction.ROLE_REVOKE, user, grant.role, grant.factory_id)
            changed = True
    for role, factory_id in sorted(wanted - held.keys(), key=lambda w: (w[0], w[1] or 0)):
        user.roles.append(RoleGrant(role=role, factory_id=factory_id, from_rules=True))
        _audit(session, actor, AuditAction.ROLE_GRANT, user, role, factory_id)
        changed = True
    if changed:
        session.flush()
        TOKENS.clear()  # cached principals of this user carry the old roles


def _audit(
    session: Session, actor: str, action: AuditAction, user: User, role: str, fid: int | None
) -> None:
    row = session.get(Factory, fid) if fid is not None else None
    factory = row.name if row is not None else None
    audit.record(
        session, actor, action, ("user", user.username), role=role, factory=factory, via="rule"
    )


def _factory_id(session: Session, name: str) -> int:
    fid = session.scalar(select(Factory.id).where(Factory.name == name))
    if fid is None:
        raise Invalid.field("factory", "known_factory", f"no factory {name!r}")
    return fid


def _view(session: Session, row: ClaimRule) -> ClaimRuleView:
    factory = session.get(Factory, row.factory_id) if row.factory_id is not None else None
    return ClaimRuleView(
        id=row.id,
        claim=row.claim,
        value=row.value,
        role=row.role,
        factory=factory.name if factory is not None else None,
        created_by=row.created_by,
        created_at=row.created_at,
    )
