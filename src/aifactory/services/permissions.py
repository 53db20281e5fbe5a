"""Who may do what: one table of actions to roles, checked by every service entry point."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aifactory.domain.enums import Role
from aifactory.errors import Forbidden


class Action(StrEnum):
    READ_REGISTRY = "read_registry"
    MANAGE_FEDERATION = "manage_federation"
    EDIT_FACTORY = "edit_factory"
    MANAGE_IDENTITY = "manage_identity"
    MANAGE_SITE_ACCOUNTS = "manage_site_accounts"
    READ_SELF = "read_self"


@dataclass(frozen=True)
class Principal:
    """An authenticated user and the roles they hold (factory-scoped roles carry the factory)."""

    user_id: int
    username: str
    roles: frozenset[tuple[Role, int | None]]
    token_id: int | None = None  # the API token this request came with (None: a portal session)

    def has(self, role: Role, factory_id: int | None = None) -> bool:
        return any(r == role and (factory_id is None or f == factory_id) for r, f in self.roles)

    @property
    def is_admin(self) -> bool:
        return self.has(Role.FEDERATION_ADMIN)


ANY = frozenset(Role)
#: Roles allowed per action. Factory-scoped roles must match the factory the action targets.
POLICY: dict[Action, frozenset[Role]] = {
    Action.READ_REGISTRY: ANY,
    Action.READ_SELF: ANY,
    Action.MANAGE_FEDERATION: frozenset({Role.FEDERATION_ADMIN}),
    Action.EDIT_FACTORY: frozenset({Role.FEDERATION_ADMIN, Role.FACTORY_OPERATOR}),
    Action.MANAGE_IDENTITY: frozenset({Role.FEDERATION_ADMIN}),
    Action.MANAGE_SITE_ACCOUNTS: frozenset({Role.FEDERATION_ADMIN, Role.FACTORY_OPERATOR}),
}
SCOPED = frozenset({Role.FACTORY_OPERATOR})


def allowed(principal: Principal, action: Action, factory_id: int | None = None) -> bool:
    """True when the principal holds a role that the policy grants for this action and scope."""
    if action in (Action.READ_REGISTRY, Action.READ_SELF):
        return True  # every authenticated user, whatever roles they hold
    for role, scope in principal.roles:
        if role not in POLICY[action]:
            continue
        if role not in SCOPED or (factory_id is not None and scope == factory_id):
            return True
    return False


def authorize(principal: Principal, action: Action, factory_id: int | None = None) -> None:
    """Raise ``Forbidden`` naming the action and the roles that could do it."""
    if not allowed(principal, action, factory_id):
        roles = ", ".join(sorted(POLICY[action]))
        scope = " of this factory" if factory_id is not None else ""
        raise Forbidden(f"{action.value} needs one of: {roles}{scope}")
