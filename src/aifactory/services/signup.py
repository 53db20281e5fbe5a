"""People create their own account: an active applicant, signed in at once.

Turned off with ``AIF_SELF_SIGNUP=false``. Refused attempts (a bad form, a taken username) are
counted per address like failed sign-ins (``services/throttle.py``), so the form cannot be used
to list usernames or to flood the database quickly; while the address is locked every attempt
is refused. Accounts made are counted per address too (``signup:IP``): after
``AIF_SIGNUP_PER_ADDRESS`` (5) within an hour the address makes no more for an hour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import User
from aifactory.domain.enums import Role
from aifactory.errors import FieldError, Forbidden, Invalid
from aifactory.services import audit, identity, sessions, throttle
from aifactory.services.audit import AuditAction
from aifactory.settings import Settings

USERNAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
EMAIL = re.compile(r"^[^@\s\x00-\x1f]{1,64}@[^@\s\x00-\x1f]+\.[^@\s\x00-\x1f]+$")


@dataclass(frozen=True)
class SignUp:
    username: str
    email: str
    full_name: str
    password: str


def problems(session: Session, form: SignUp) -> list[FieldError]:
    """Every rule the form breaks, all at once."""
    found: list[FieldError] = []
    if not USERNAME.fullmatch(form.username):
        msg = "2-32 characters: lower-case letters, digits, '.', '_', '-'; starts with a letter"
        found.append(FieldError("username", "pattern", msg))
    elif session.scalar(select(User.id).where(User.username == form.username)) is not None:
        found.append(FieldError("username", "unique", f"{form.username!r} is taken"))
    if len(form.email) > 254 or not EMAIL.fullmatch(form.email):
        found.append(FieldError("email", "email", "give an e-mail address, e.g. ada@example.eu"))
    if not form.full_name or len(form.full_name) > 200 or not form.full_name.isprintable():
        found.append(FieldError("full_name", "required", "give your name (at most 200 characters)"))
    if len(form.password) < sessions.MIN_PASSWORD_LENGTH:
        msg = f"at least {sessions.MIN_PASSWORD_LENGTH} characters"
        found.append(FieldError("password", "min_length", msg))
    return found


def sign_up(
    session: Session, settings: Settings, form: SignUp, now: datetime
) -> sessions.NewSession:
    """Create the account (applicant role) and start its portal session.

    Raises:
        Forbidden: self sign-up is turned off.
        TooManyAttempts: this address made too many refused attempts, or accounts, lately.
        Invalid: one entry per broken rule (the attempt is counted, and committed).
    """
    if not settings.self_signup:
        raise Forbidden("self sign-up is turned off here; ask a federation admin for an account")
    address = audit.origin.get()
    limits = throttle.policies(settings, address)
    made = {throttle.signup_key(address): throttle.signup_policy(settings)}
    throttle.check(session, [*limits, *made], now)
    found = problems(session, form)
    if found:
        throttle.fail(session, limits, now)
        audit.record(session, "anonymous", AuditAction.SIGNUP, ("user", form.username), "failed")
        session.commit()  # the refusal counts although nothing else is stored
        raise Invalid("; ".join(f"{p.field}: {p.message}" for p in found), found)
    identity.create_user(
        session,
        form.username,
        form.email,
        form.full_name,
        form.password,
        [(Role.APPLICANT, None)],
        actor=form.username,
    )
    audit.record(session, form.username, AuditAction.SIGNUP, ("user", form.username))
    throttle.fail(session, made, now)  # one account fewer allowed from this address
    user = session.scalar(select(User).where(User.username == form.username))
    assert user is not None
    return sessions.start(session, user, now)
