"""Users, organisations, memberships, roles and API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.api.deps import CurrentPrincipal, SessionDep, SettingsDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.schemas import (
    MembershipIn,
    OrganisationCreate,
    PasswordIn,
    RoleIn,
    TokenCreate,
    UserCreate,
)
from aifactory.errors import Forbidden
from aifactory.services import identity, sessions
from aifactory.services.permissions import Action, authorize
from aifactory.services.views import NewToken, OrganisationView, TokenView, UserView

router = APIRouter(tags=["identity"], responses=ERROR_RESPONSES)


@router.get("/me")
def me(session: SessionDep, who: CurrentPrincipal) -> UserView:
    authorize(who, Action.READ_SELF)
    return identity.get_user(session, who.username)


@router.get("/users")
def list_users(session: SessionDep, who: CurrentPrincipal) -> list[UserView]:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.list_users(session)


@router.post("/users", status_code=201)
def create_user(body: UserCreate, session: SessionDep, who: CurrentPrincipal) -> UserView:
    authorize(who, Action.MANAGE_IDENTITY)
    user = identity.create_user(
        session,
        body.username,
        body.email,
        body.full_name,
        body.password,
        [(r.role, r.factory) for r in body.roles],
    )
    if body.organisation:
        user = identity.add_membership(session, body.username, body.organisation)
    return user


@router.get("/users/{username}")
def get_user(username: str, session: SessionDep, who: CurrentPrincipal) -> UserView:
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    return identity.get_user(session, username)


@router.put("/users/{username}/password", status_code=204)
def set_password(
    username: str, body: PasswordIn, session: SessionDep, who: CurrentPrincipal
) -> None:
    """Set a portal password: your own, or anyone's as a federation admin."""
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    identity.get_user(session, username)  # 404 for an unknown user
    sessions.set_password(session, username, body.password)


@router.post("/users/{username}/roles", status_code=201)
def grant_role(username: str, body: RoleIn, session: SessionDep, who: CurrentPrincipal) -> UserView:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.grant_role(session, username, body.role, body.factory)


@router.post("/users/{username}/memberships", status_code=201)
def add_membership(
    username: str, body: MembershipIn, session: SessionDep, who: CurrentPrincipal
) -> UserView:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.add_membership(session, username, body.organisation)


@router.get("/organisations")
def list_organisations(session: SessionDep, who: CurrentPrincipal) -> list[OrganisationView]:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.list_organisations(session)


@router.post("/organisations", status_code=201)
def create_organisation(
    body: OrganisationCreate, session: SessionDep, who: CurrentPrincipal
) -> OrganisationView:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.create_organisation(session, **body.model_dump())


@router.get("/tokens")
def list_tokens(session: SessionDep, who: CurrentPrincipal) -> list[TokenView]:
    authorize(who, Action.READ_SELF)
    return identity.list_tokens(session, who.username)


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenCreate, session: SessionDep, who: CurrentPrincipal, settings: SettingsDep
) -> NewToken:
    username = body.username or who.username
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    ttl = body.ttl_days or settings.token_ttl_days
    return identity.create_token(session, username, body.name, ttl)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, session: SessionDep, who: CurrentPrincipal) -> TokenView:
    token = identity.get_token(session, token_id)
    if token.username != who.username and not who.is_admin:
        raise Forbidden("only the token's owner or a federation admin may revoke it")
    return identity.revoke_token(session, token_id)
