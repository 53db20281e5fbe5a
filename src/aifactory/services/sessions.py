"""Portal sign-in sessions: password or API-token sign-in, a random cookie, a bound CSRF token.

The browser holds a random 256-bit secret; the database holds only its SHA-256, so a leaked
table cannot be replayed. The CSRF token is derived from the secret (never stored), so it is
bound to the one session and changes with every sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aifactory.db.models import OidcIdentity, PortalSession, User
from aifactory.errors import Invalid, Unauthenticated
from aifactory.services import audit, identity, throttle
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.settings import Settings

SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD_LENGTH = 10


@dataclass(frozen=True)
class SignedIn:
    """A live portal session: who it is, the CSRF token its forms carry, when it ends."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class NewSession(SignedIn):
    """A session just created; ``secret`` goes into the cookie and is never stored."""

    secret: str


def csrf_for(secret: str) -> str:
    """The CSRF token of a session (or of an anonymous form cookie)."""
    return hashlib.sha256(b"aif-csrf:" + secret.encode()).hexdigest()


def same_token(expected: str, given: str) -> bool:
    """Constant-time comparison of two tokens."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def sign_in(
    session: Session, settings: Settings, method: str, username: str, secret: str, now: datetime
) -> NewSession:
    """Sign in with a password (``method="password"``) or an API token, throttled and audited.

    While the account or the address is locked, even the right credentials are refused
    (``TooManyAttempts``). A failure is counted and committed before it is raised, so the
    request's rollback does not undo the count.
    """
    name = username if method == "password" else ""
    limits = throttle.policies(settings, audit.origin.get(), name)
    throttle.check(session, list(limits), now)
    try:
        if method == "password":
            started = sign_in_password(session, username, secret, now)
        else:
            started = sign_in_token(session, secret, now)
    except Unauthenticated:
        throttle.fail(session, limits, now)
        audit.record(session, name or "anonymous", AuditAction.LOGIN, ("user", name), "failed")
        session.commit()
        raise
    throttle.succeeded(session, [throttle.account_key(started.principal.username)])
    who = started.principal.username
    audit.record(session, who, AuditAction.LOGIN, ("user", who), method=method)
    return started


def sign_in_password(session: Session, username: str, password: str, now: datetime) -> NewSession:
    """Start a session for a user whose password matches; one vague message for every failure."""
    user = session.scalar(select(User).where(User.username == username))
    stored = user.password_hash if user is not None else None
    # Unknown users and users without a password cost one hash too, so timing tells nothing.
    matches = identity.verify_password(stored or _dummy_hash(), password) and stored is not None
    if user is None or not user.is_active or not matches:
        raise Unauthenticated("unknown user or wrong password")
    return start(session, user, now)


@cache
def _dummy_hash() -> str:
    return identity.hash_password(secrets.token_urlsafe(16))


def sign_in_token(session: Session, token: str, now: datetime) -> NewSession:
    """Start a session for the owner of a valid API token."""
    principal = identity.authenticate(session, token, now)
    return start(session, session.get_one(User, principal.user_id), now)


def start(session: Session, user: User, now: datetime) -> NewSession:
    """A fresh session (never reusing an old cookie, so a planted one cannot be adopted)."""
    session.execute(delete(PortalSession).where(PortalSession.expires_at <= now))
    secret = secrets.token_urlsafe(32)
    row = PortalSession(
        token_hash=identity.hash_token(secret),
        user_id=user.id,
        created_at=now,
        expires_at=now + SESSION_TTL,
    )
    session.add(row)
    session.flush()
    return NewSession(identity.principal_of(user), csrf_for(secret), row.expires_at, secret)


def resolve(session: Session, secret: str, now: datetime) -> SignedIn:
    """The session behind a cookie value; unknown, expired or deactivated ones are refused."""
    row = session.scalar(
        select(PortalSession).where(PortalSession.token_hash == identity.hash_token(secret))
    )
    if row is None or row.expires_at <= now:
        raise Unauthenticated("session expired; sign in again")
    user = session.get_one(User, row.user_id)
    if not user.is_active:
        raise Unauthenticated("account disabled")
    return SignedIn(identity.principal_of(user), csrf_for(secret), row.expires_at)


def end(session: Session, secret: str) -> None:
    """Sign out: the session row goes, so the cookie is worthless even if it was copied."""
    session.execute(
        delete(PortalSession).where(PortalSession.token_hash == identity.hash_token(secret))
    )


def set_password(
    session: Session,
    username: str,
    password: str,
    *,
    actor: str = "system",
    current: str | None = None,
    limits: dict[str, throttle.Policy] | None = None,
    now: datetime | None = None,
) -> None:
    """Set a user's portal password (argon2id hash) and end their portal sessions.

    With ``limits`` (the user changes their own password) the current password must be given
    and right, checked and throttled like a sign-in, and users who sign in through a provider
    (federated sign-in) may not set one: a password would let them in past the provider. A
    federation admin (or the local CLI) passes none. Short passwords are refused.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid.field("password", "min_length", f"at least {MIN_PASSWORD_LENGTH} characters")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise Invalid.field("username", "known_user", f"no user {username!r}")
    if limits is not None and _federated(session, user):
        msg = (
            "you sign in through your home organisation; only a federation admin may give "
            "this account a password"
        )
        raise Invalid.field("password", "not_federated", msg)
    if limits is not None and user.password_hash is not None:
        _check_current(session, user, current, limits, now or datetime.now(UTC))
    user.password_hash = identity.hash_password(password)
    session.execute(delete(PortalSession).where(PortalSession.user_id == user.id))
    audit.record(session, actor, AuditAction.PASSWORD_SET, ("user", username))
    session.flush()


def _federated(session: Session, user: User) -> bool:
    """Whether the user is linked to a provider's identity (federated sign-in)."""
    link = select(OidcIdentity.id).where(OidcIdentity.user_id == user.id).limit(1)
    return session.scalar(link) is not None


def _check_current(
    session: Session,
    user: User,
    current: str | None,
    limits: dict[str, throttle.Policy],
    now: datetime,
) -> None:
    if not current:
        msg = "give your current password to change it"
        raise Invalid.field("current_password", "required", msg)
    throttle.check(session, list(limits), now)
    if identity.verify_password(user.password_hash, current):
        return
    throttle.fail(session, limits, now)
    audit.record(
        session, user.username, AuditAction.PASSWORD_SET, ("user", user.username), "failed"
    )
    session.commit()  # the failure counts although the change is refused
    raise Invalid.field("current_password", "matches", "the current password given is wrong")
