"""Users, organisations, memberships, roles and API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep, SettingsDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath
from aifactory.api.schemas import (
    MembershipIn,
    PasswordIn,
    RoleIn,
    TokenCreate,
    UserCreate,
)
from aifactory.errors import NotFound
from aifactory.services import audit, identity, organisations, sessions, throttle
from aifactory.services.permissions import Action, authorize
from aifactory.services.self_service_views import OrganisationDetail, OrganisationInput
from aifactory.services.views import NewToken, TokenView, UserView

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
        actor=who.username,
    )
    if body.organisation:
        user = identity.add_membership(session, body.username, body.organisation, who.username)
    return user


@router.get("/users/{username}")
def get_user(username: str, session: SessionDep, who: CurrentPrincipal) -> UserView:
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    return identity.get_user(session, username)


@router.put("/users/{username}/password", status_code=204)
def set_password(
    username: str,
    body: PasswordIn,
    session: SessionDep,
    who: CurrentPrincipal,
    settings: SettingsDep,
    now: NowDep,
) -> None:
    """Set a portal password: your own (giving the current one, if you have one), or anyone's
    as a federation admin. The user's portal sessions end."""
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    identity.get_user(session, username)  # 404 for an unknown user
    own = not who.is_admin
    sessions.set_password(
        session,
        username,
        body.password,
        actor=who.username,
        current=body.current_password,
        limits=throttle.policies(settings, audit.origin.get(), username) if own else None,
        now=now,
    )


@router.post("/users/{username}/roles", status_code=201)
def grant_role(username: str, body: RoleIn, session: SessionDep, who: CurrentPrincipal) -> UserView:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.grant_role(session, username, body.role, body.factory, who.username)


@router.post("/users/{username}/memberships", status_code=201)
def add_membership(
    username: str, body: MembershipIn, session: SessionDep, who: CurrentPrincipal
) -> UserView:
    authorize(who, Action.MANAGE_IDENTITY)
    return identity.add_membership(session, username, body.organisation, who.username)


@router.get("/organisations")
def list_organisations(session: SessionDep, who: CurrentPrincipal) -> list[OrganisationDetail]:
    """Every organisation for federation admins; the ones you belong to for everyone else."""
    authorize(who, Action.READ_SELF)
    return organisations.list_visible(session, who)


@router.post("/organisations", status_code=201)
def create_organisation(
    body: OrganisationInput, session: SessionDep, who: CurrentPrincipal
) -> OrganisationDetail:
    """Register an organisation with the facts eligibility needs (partner and linked
    enterprises included); you become its member, unless you register it as an admin."""
    authorize(who, Action.READ_SELF)
    return organisations.register(session, who, body)


@router.get("/tokens")
def list_tokens(session: SessionDep, who: CurrentPrincipal) -> list[TokenView]:
    authorize(who, Action.READ_SELF)
    return identity.list_tokens(session, who.username)


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenCreate, session: SessionDep, who: CurrentPrincipal, settings: SettingsDep
) -> NewToken:
    """Mint a token. One you mint for yourself with a token never outlives that token, and
    revoking that token revokes this one; tokens an admin mints for others stand alone."""
    username = body.username or who.username
    if username != who.username:
        authorize(who, Action.MANAGE_IDENTITY)
    return identity.create_token(
        session,
        username,
        body.name,
        body.ttl_days or settings.token_ttl_days,
        actor=who.username,
        parent_id=who.token_id if username == who.username else None,
        ttl_asked=body.ttl_days is not None,
    )


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: IdPath, session: SessionDep, who: CurrentPrincipal) -> TokenView:
    token = identity.get_token(session, token_id)
    if token.username != who.username and not who.is_admin:  # others' tokens: as if unknown
        raise NotFound(f"token {token_id} not found")
    return identity.revoke_token(session, token_id, who.username)
