"""Identity use cases: users, organisations, memberships, roles and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    ApiToken,
    Country,
    Factory,
    Membership,
    Organisation,
    RoleGrant,
    User,
)
from aifactory.db.types import utcnow
from aifactory.domain.enums import OrganisationType, Role
from aifactory.errors import Conflict, Invalid, NotFound, Unauthenticated
from aifactory.services import audit
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.services.token_cache import TOKENS, TokenCache
from aifactory.services.views import NewToken, OrganisationView, RoleView, TokenView, UserView

TOKEN_PREFIX = "aif_"  # noqa: S105 (a label, not a secret)
LAST_USED_GRAIN = timedelta(minutes=1)  # last_used_at is written at most this often per token
_hasher = PasswordHasher()


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so one SHA-256 is enough (no KDF needed to resist guessing)."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except VerificationError:
        return False


# --- users and organisations -----------------------------------------------------------------


def create_user(
    session: Session,
    username: str,
    email: str,
    full_name: str = "",
    password: str | None = None,
    roles: list[tuple[Role, str | None]] | None = None,
    actor: str = "system",
) -> UserView:
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = User(
        username=username,
        email=email,
        full_name=full_name,
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    session.flush()
    audit.record(session, actor, AuditAction.USER_CREATE, ("user", username), email=email)
    for role, factory in roles or []:
        grant_role(session, username, role, factory, actor)
    return user_view(session, _user(session, username))


def get_user(session: Session, username: str) -> UserView:
    return user_view(session, _user(session, username))


def list_users(session: Session) -> list[UserView]:
    return [user_view(session, u) for u in session.scalars(select(User).order_by(User.username))]


def grant_role(
    session: Session, username: str, role: Role, factory: str | None, actor: str = "system"
) -> UserView:
    """Give a role; factory operators need a factory, other roles must not name one."""
    user = _user(session, username)
    if (role == Role.FACTORY_OPERATOR) != (factory is not None):
        raise Invalid.field(
            "factory", "operator_scope", "factory_operator needs a factory; other roles take none"
        )
    factory_id = _factory_id(session, factory) if factory else None
    held = [g for g in user.roles if g.role == role and g.factory_id == factory_id]
    for grant in held:
        grant.from_rules = False  # granted by hand now: claim rules no longer take it away
    if not held:
        user.roles.append(RoleGrant(role=role, factory_id=factory_id))
        session.flush()
        TOKENS.clear()  # the user's cached principals lack the role
        audit.record(
            session, actor, AuditAction.ROLE_GRANT, ("user", username), role=role, factory=factory
        )
    return user_view(session, user)


def create_organisation(
    session: Session,
    name: str,
    type: OrganisationType,
    country_code: str,
    staff_headcount: int | None = None,
    annual_turnover_eur: int | None = None,
    balance_sheet_eur: int | None = None,
) -> OrganisationView:
    if session.scalar(select(Organisation.id).where(Organisation.name == name)) is not None:
        raise Conflict(f"organisation {name!r} already exists")
    if session.get(Country, country_code) is None:
        raise Invalid.field("country_code", "known_country", f"unknown country {country_code!r}")
    org = Organisation(
        name=name,
        type=type,
        country_code=country_code,
        staff_headcount=staff_headcount,
        annual_turnover_eur=annual_turnover_eur,
        balance_sheet_eur=balance_sheet_eur,
        enterprise_links=[],
    )
    session.add(org)
    session.flush()
    return OrganisationView.model_validate(org)


def list_organisations(session: Session) -> list[OrganisationView]:
    rows = session.scalars(select(Organisation).order_by(Organisation.name))
    return [OrganisationView.model_validate(o) for o in rows]


def add_membership(
    session: Session, username: str, organisation: str, actor: str = "system"
) -> UserView:
    user = _user(session, username)
    org = session.scalar(select(Organisation).where(Organisation.name == organisation))
    if org is None:
        raise NotFound(f"organisation {organisation!r} not found")
    if not any(m.organisation_id == org.id for m in user.memberships):
        user.memberships.append(Membership(organisation_id=org.id))
        session.flush()
        audit.record(
            session,
            actor,
            AuditAction.MEMBERSHIP_ADD,
            ("user", username),
            organisation=organisation,
        )
    return user_view(session, user)


def user_view(session: Session, user: User) -> UserView:
    names = {fid: name for fid, name in session.execute(select(Factory.id, Factory.name))}
    return UserView(
        id=user.id,
        username=user.username,
        email=user.email,
        full_name=user.full_name,
        is_active=user.is_active,
        roles=[
            RoleView(role=g.role, factory=names.get(g.factory_id) if g.factory_id else None)
            for g in sorted(user.roles, key=lambda g: (g.role, g.factory_id or 0))
        ],
        organisations=sorted(m.organisation.name for m in user.memberships),
    )


# --- tokens ----------------------------------------------------------------------------------


def create_token(
    session: Session,
    username: str,
    name: str,
    ttl_days: int,
    now: datetime | None = None,
    *,
    actor: str = "system",
    parent_id: int | None = None,
    ttl_asked: bool = True,
) -> NewToken:
    """Make a random token; only its hash is stored and the secret is returned this once.

    A token minted with another token of the same user (``parent_id``) never outlives it: an
    explicit longer lifetime is refused, the default one is cut to the parent's, and revoking
    the parent revokes it.
    """
    user = _user(session, username)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    created = now or utcnow()
    expires = created + timedelta(days=ttl_days)
    parent = session.get(ApiToken, parent_id) if parent_id is not None else None
    if parent is not None and expires > parent.expires_at:
        if ttl_asked:
            msg = (
                f"{ttl_days} days would outlive the token minting it (expires "
                f"{parent.expires_at:%Y-%m-%d %H:%M} UTC)"
            )
            raise Invalid.field("ttl_days", "within_parent", msg)
        expires = parent.expires_at
    row = ApiToken(
        user_id=user.id,
        name=name,
        prefix=secret[:12],
        token_hash=hash_token(secret),
        created_at=created,
        expires_at=expires,
        parent_id=parent.id if parent is not None else None,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        AuditAction.TOKEN_MINT,
        ("token", row.id),
        user=username,
        name=name,
        expires_at=expires.isoformat(),
        parent=row.parent_id,
    )
    return NewToken(**token_view(row).model_dump(), token=secret)


def list_tokens(session: Session, username: str | None = None) -> list[TokenView]:
    query = select(ApiToken).order_by(ApiToken.id)
    if username is not None:
        query = query.where(ApiToken.user_id == _user(session, username).id)
    return [token_view(t) for t in session.scalars(query)]


def get_token(session: Session, token_id: int) -> TokenView:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    return token_view(row)


def revoke_token(session: Session, token_id: int, actor: str = "system") -> TokenView:
    """Revoke a token and every token minted from it, at any depth."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"token {token_id} not found")
    moment, revoked, frontier = utcnow(), [], [row]
    while frontier:
        for token in frontier:
            if token.revoked_at is None:
                token.revoked_at = moment
                revoked.append(token.id)
        ids = [t.id for t in frontier]
        frontier = list(session.scalars(select(ApiToken).where(ApiToken.parent_id.in_(ids))))
    session.flush()
    TOKENS.clear()
    if revoked:
        audit.record(session, actor, AuditAction.TOKEN_REVOKE, ("token", token_id), revoked=revoked)
    return token_view(row)


def authenticate(
    session: Session, token: str, now: datetime | None = None, cache: TokenCache | None = None
) -> Principal:
    """Resolve a bearer token to a principal; unknown, revoked or expired tokens are refused.

    With ``cache``, a token checked here is remembered there (see ``services/token_cache.py``).
    """
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    moment = now or utcnow()
    if row is None:  # only unknown tokens count as guesses (see services/throttle.py)
        raise Unauthenticated("invalid API token", extra={"guess": True})
    if not row.user.is_active:
        raise Unauthenticated("invalid API token")
    if row.revoked_at is not None:
        raise Unauthenticated("API token revoked")
    if row.expires_at <= moment:
        raise Unauthenticated("API token expired")
    if row.last_used_at is None or moment - row.last_used_at >= LAST_USED_GRAIN:
        row.last_used_at = moment
    principal = principal_of(row.user, row.id)
    if cache is not None:
        cache.put(digest, principal, row.expires_at)
    return principal


def principal_of(user: User, token_id: int | None = None) -> Principal:
    return Principal(
        user_id=user.id,
        username=user.username,
        roles=frozenset((Role(g.role), g.factory_id) for g in user.roles),
        token_id=token_id,
    )


def token_view(row: ApiToken) -> TokenView:
    return TokenView(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        username=row.user.username,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"user {username!r} not found")
    return user


def _factory_id(session: Session, name: str) -> int:
    fid = session.scalar(select(Factory.id).where(Factory.name == name))
    if fid is None:
        raise NotFound(f"factory {name!r} not found")
    return fid


def bootstrap_admin(session: Session, username: str, ttl_days: int) -> NewToken:
    """Make sure a federation admin called ``username`` exists and hand out a fresh token.

    This is the one identity operation that bypasses the API: the first admin has no token to
    call it with. It runs on the server's own database (``aif admin bootstrap``).
    """
    actor = "local:bootstrap"
    if session.scalar(select(User.id).where(User.username == username)) is None:
        create_user(
            session, username, f"{username}@localhost", "Federation administrator", actor=actor
        )
    grant_role(session, username, Role.FEDERATION_ADMIN, None, actor)
    return create_token(session, username, "bootstrap", ttl_days, actor=actor)
