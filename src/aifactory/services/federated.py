"""Federated sign-in: start an OpenID Connect login, take its callback, find or create the user.

A pending login (state → PKCE verifier, nonce, where to go next) lives in the database, so the
callback may reach any server process; it is deleted on its first use and expires after
``PENDING_TTL``. A person is found by (issuer, subject); the first sign-in creates a user with the
applicant role and links the organisation whose home domain the ``schac_home_organization``
claim names (only then: an admin may remove the membership later). Claim rules
(``services/claim_rules.py``) run at every sign-in.

The calls to the provider (``verify``) take seconds when it is slow, so they run outside any
transaction: the caller commits ``consume`` first and provisions the user in a new transaction
(``complete``). Sign-ins started and not finished are counted per address (``start_limits``).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from aifactory.db.models import OidcIdentity, OidcLogin, Organisation, User
from aifactory.domain.enums import Role
from aifactory.errors import (
    AIFactoryError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Unauthenticated,
)
from aifactory.services import audit, claim_rules, identity, oidc, throttle
from aifactory.services.audit import AuditAction
from aifactory.services.oidc import OidcConfig, Provider
from aifactory.services.permissions import Action, Principal, authorize
from aifactory.services.sessions import NewSession, start
from aifactory.settings import Settings

PENDING_TTL = timedelta(minutes=10)
ACTOR = "oidc"


@dataclass(frozen=True)
class Pending:
    """A login taken back from the database (already deleted: it cannot be used again)."""

    verifier: str
    nonce: str
    next_url: str
    redirect_uri: str


@dataclass(frozen=True)
class Verified:
    """What the provider vouched for: its issuer and the person's claims (id_token + userinfo)."""

    issuer: str
    claims: dict[str, Any]


def provider(cfg: OidcConfig) -> Provider:
    """The provider's endpoints (its discovery, kept a few minutes); call outside a transaction."""
    with oidc.client() as http:
        return oidc.provider_of(http, cfg.issuer)


def start_limits(settings: Settings) -> dict[str, throttle.Policy]:
    """Sign-ins started from the caller's address and not finished, under a key of their own
    (``oidc:ADDRESS``) so that they never lock password sign-ins from there."""
    key = "oidc:" + (audit.origin.get()[:64] or "unknown")
    window, lockout = (
        timedelta(seconds=settings.auth_window_s),
        timedelta(seconds=settings.auth_lockout_s),
    )
    return {key: throttle.Policy(settings.auth_address_failures, window, lockout)}


def begin(
    session: Session,
    provider: Provider,
    cfg: OidcConfig,
    redirect_uri: str,
    next_url: str,
    browser_secret: str,
    limits: dict[str, throttle.Policy],
    now: datetime,
) -> str:
    """Record a pending login and return the provider's authorization URL to send the browser to.

    Raises ``TooManyAttempts`` while the address has too many sign-ins started and not finished.
    """
    throttle.check(session, list(limits), now)
    throttle.fail(session, limits, now)  # cleared by a sign-in finished from the same address
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier, challenge = oidc.pkce_pair()
    session.execute(delete(OidcLogin).where(OidcLogin.expires_at <= now))
    session.add(
        OidcLogin(
            state_hash=identity.hash_token(state),
            browser_hash=identity.hash_token(browser_secret),
            verifier=verifier,
            nonce=nonce,
            next_url=next_url,
            redirect_uri=redirect_uri,
            expires_at=now + PENDING_TTL,
        )
    )
    session.flush()
    return oidc.authorization_url(provider, cfg, redirect_uri, state, nonce, challenge)


def consume(session: Session, state: str, browser_secret: str, now: datetime) -> Pending:
    """Take the pending login of ``state`` (once only: a second use finds nothing)."""
    row = session.scalar(
        select(OidcLogin).where(OidcLogin.state_hash == identity.hash_token(state))
    )
    unknown = "this sign-in is unknown or was already used; start again"
    if row is None:
        raise Invalid.field("state", "known", unknown)
    # Deleting by id and counting the rows makes two concurrent callbacks race for one use.
    gone = session.execute(delete(OidcLogin).where(OidcLogin.id == row.id))
    if getattr(gone, "rowcount", 0) != 1:
        raise Invalid.field("state", "known", unknown)
    if row.expires_at <= now:
        raise Invalid.field("state", "fresh", "this sign-in took too long; start again")
    if identity.hash_token(browser_secret) != row.browser_hash:
        msg = "this sign-in was started in another browser; start again here"
        raise Invalid.field("state", "same_browser", msg)
    return Pending(row.verifier, row.nonce, row.next_url, row.redirect_uri)


def verify(cfg: OidcConfig, pending: Pending, code: str, now: datetime) -> Verified:
    """Exchange the code, verify the id_token and read userinfo: calls to the provider only,
    made outside any transaction (``consume`` is committed before, ``complete`` comes after)."""
    with oidc.client() as http:
        provider = oidc.provider_of(http, cfg.issuer)
        tokens = oidc.exchange_code(
            http, provider, cfg, code, pending.verifier, pending.redirect_uri
        )
        claims = oidc.check_id_token(
            http, provider, tokens["id_token"], cfg.client_id, pending.nonce, now
        )
        info = oidc.userinfo(http, provider, tokens["access_token"], str(claims["sub"]))
    return Verified(provider.issuer, {**claims, **info})


def complete(
    session: Session, verified: Verified, limits: dict[str, throttle.Policy], now: datetime
) -> NewSession:
    """Find or create the user of verified claims and start their portal session."""
    user = provision(session, verified.issuer, verified.claims, now)
    started = start(session, user, now)
    throttle.succeeded(session, list(limits))
    audit.record(
        session,
        user.username,
        AuditAction.LOGIN,
        ("user", user.username),
        method="oidc",
        issuer=verified.issuer,
    )
    return started


def provision(session: Session, issuer: str, claims: dict[str, Any], now: datetime) -> User:
    """The user behind verified claims: found by (issuer, sub) or created (and then linked to
    the organisation of their home domain), with the roles the claim rules give."""
    user = _find(session, issuer, claims, now)
    if user is None:
        user = _create(session, issuer, claims, now)
        _link_organisation(session, user, claims)
    if not user.is_active:
        raise Forbidden("this account is disabled; ask the federation's administrators")
    claim_rules.apply(session, user, claims, ACTOR)
    return user


def record_failure(session: Session, exc: AIFactoryError) -> None:
    """A refused federated sign-in, in the audit log like a refused password."""
    audit.record(
        session,
        "anonymous",
        AuditAction.LOGIN,
        ("user", ""),
        "failed",
        method="oidc",
        reason=exc.message,
    )


def _find(session: Session, issuer: str, claims: dict[str, Any], now: datetime) -> User | None:
    subject = str(claims["sub"])
    link = session.scalar(
        select(OidcIdentity).where(OidcIdentity.issuer == issuer, OidcIdentity.subject == subject)
    )
    if link is None:
        return None
    link.last_login_at = now
    return session.get_one(User, link.user_id)


def _create(session: Session, issuer: str, claims: dict[str, Any], now: datetime) -> User:
    subject = str(claims["sub"])
    email = _email(claims)
    username = _unique_username(session, _username_base(claims, email))
    name = str(claims.get("name") or "")[:200]
    identity.create_user(
        session, username, email, name, roles=[(Role.APPLICANT, None)], actor=ACTOR
    )
    user = session.scalars(select(User).where(User.username == username)).one()
    session.add(
        OidcIdentity(
            user_id=user.id, issuer=issuer, subject=subject, created_at=now, last_login_at=now
        )
    )
    session.flush()
    return user


def _email(claims: dict[str, Any]) -> str:
    email = claims.get("email")
    if not isinstance(email, str) or not re.fullmatch(r"[^@\s]{1,64}@[^@\s]{1,189}", email):
        raise Unauthenticated("the sign-in provider sent no usable email address")
    return email


def _username_base(claims: dict[str, Any], email: str) -> str:
    raw = claims.get("preferred_username")
    text = raw if isinstance(raw, str) and raw.strip() else email.split("@", 1)[0]
    base = re.sub(r"[^a-z0-9_.\-]+", "-", text.lower().split("@", 1)[0]).strip("-.")
    if len(base) < 2 or not base[0].isalpha():
        base = "user-" + base
    return base[:56]


def _unique_username(session: Session, base: str) -> str:
    """``base``, or ``base-2``, ``base-3`` … whichever is free."""
    taken = set(
        session.scalars(
            select(User.username).where((User.username == base) | (User.username.like(f"{base}-%")))
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _link_organisation(session: Session, user: User, claims: dict[str, Any]) -> None:
    raw = claims.get("schac_home_organization")
    domains = raw if isinstance(raw, list) else [raw]
    wanted = [d.strip().lower() for d in domains if isinstance(d, str) and d.strip()]
    if not wanted:
        return
    orgs = session.scalars(
        select(Organisation).where(func.lower(Organisation.home_domain).in_(wanted))
    )
    for org in orgs:
        identity.add_membership(session, user.username, org.name, ACTOR)


def set_home_domain(session: Session, who: Principal, org_id: int, domain: str | None) -> str:
    """Set (or clear, with None) the home-organisation domain of an organisation; admins only:
    everyone whose provider reports that domain joins the organisation at their first sign-in."""
    authorize(who, Action.MANAGE_IDENTITY)
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound(f"organisation {org_id} not found")
    value = domain.strip().lower() if domain else None
    if value is not None:
        taken = session.scalar(
            select(Organisation.name).where(
                Organisation.home_domain == value, Organisation.id != org_id
            )
        )
        if taken is not None:
            raise Conflict(f"home domain {value!r} already belongs to {taken!r}")
    org.home_domain = value
    session.flush()
    audit.record(
        session,
        who.username,
        AuditAction.ORGANISATION_HOME_DOMAIN,
        ("organisation", org_id),
        home_domain=value,
    )
    return org.name


def refused(error: str) -> Unauthenticated:
    """The provider sent the browser back without a code (the person declined, or it failed)."""
    return Unauthenticated(f"the sign-in provider did not sign you in ({error[:80]})")
