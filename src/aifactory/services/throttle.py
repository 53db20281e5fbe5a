"""Failed credential checks, counted per account and per address, with temporary lockouts.

A key is ``user:NAME`` (wrong passwords for one account), ``addr:IP`` (wrong passwords or
unknown tokens from one address) or ``signup:IP`` (accounts created from one address: an
allowance counted the same way, see ``signup_policy``). ``max_failures`` failures within
``window`` lock the key for ``lockout``, doubling with each lockout in a row (to at most 16
times). While a key is locked every check with it is refused, the right credentials included,
and says when to try again. Counts live in the database, so every API worker sees the same
ones. Callers commit a failure even though they go on to refuse the request (``fail`` then
``commit``, then raise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from aifactory.db.inserts import insert_or_skip
from aifactory.db.models import AuthThrottle
from aifactory.errors import NotFound, TooManyAttempts
from aifactory.services import audit
from aifactory.services.audit import AuditAction
from aifactory.settings import Settings


@dataclass(frozen=True)
class Policy:
    """How many failures within ``window`` lock a key, and for how long."""

    max_failures: int
    window: timedelta
    lockout: timedelta


class LockoutView(BaseModel):
    key: str
    failures: int
    last_failure_at: datetime
    locked_until: datetime | None
    lockouts: int
    locked_now: bool = False


def account_key(username: str) -> str:
    return f"user:{username[:64]}"


def address_key(address: str) -> str:
    return f"addr:{address[:64] or 'unknown'}"


def signup_key(address: str) -> str:
    return f"signup:{address[:64] or 'unknown'}"


def signup_policy(settings: Settings) -> Policy:
    """Accounts one address may create: ``signup_per_address`` within an hour, then none for
    an hour (doubling like any lock in a row)."""
    hour = timedelta(hours=1)
    return Policy(settings.signup_per_address, hour, hour)


def check(session: Session, keys: list[str], now: datetime) -> None:
    """Refuse (429) while any of the keys is locked."""
    rows = session.scalars(
        select(AuthThrottle).where(AuthThrottle.key.in_(keys), AuthThrottle.locked_until > now)
    ).all()
    if not rows:
        return
    until = max(r.locked_until for r in rows if r.locked_until is not None)
    wait = max(1, math.ceil((until - now).total_seconds()))
    whom = "this account" if any(r.key.startswith("user:") for r in rows) else "this address"
    what = f"too many failed sign-in attempts for {whom}"
    if all(r.key.startswith("signup:") for r in rows):
        what = "too many accounts were created from this address lately"
    raise TooManyAttempts(
        f"{what}; try again in {_human(wait)} (a federation admin can lift the lock)",
        extra={"retry_after_s": wait},
    )


def policies(settings: Settings, address: str, username: str | None = None) -> dict[str, Policy]:
    """The policies that apply to one credential check: its address and, if named, its account."""
    window, lockout = (
        timedelta(seconds=settings.auth_window_s),
        timedelta(seconds=settings.auth_lockout_s),
    )
    out = {address_key(address): Policy(settings.auth_address_failures, window, lockout)}
    if username:
        out[account_key(username)] = Policy(settings.auth_account_failures, window, lockout)
    return out


def fail(session: Session, policies: dict[str, Policy], now: datetime) -> None:
    """Count one failure (for ``signup:`` keys: one account made) against each key; lock the
    keys that reach their limit."""
    for key, policy in policies.items():
        _count(session, key, policy, now)


def succeeded(session: Session, keys: list[str]) -> None:
    """A good credential clears the failures counted against its account."""
    session.execute(delete(AuthThrottle).where(AuthThrottle.key.in_(keys)))


def locked(session: Session, now: datetime) -> list[LockoutView]:
    """Keys locked now or with failures counted, newest failure first."""
    rows = session.scalars(select(AuthThrottle).order_by(AuthThrottle.last_failure_at.desc()))
    return [
        LockoutView.model_validate(r, from_attributes=True).model_copy(
            update={"locked_now": r.locked_until is not None and r.locked_until > now}
        )
        for r in rows
    ]


def unlock(session: Session, actor: str, key: str) -> LockoutView:
    """Lift a lock and forget the key's failures (a federation admin's act, audited)."""
    row = session.get(AuthThrottle, key)
    if row is None:
        raise NotFound(f"no failed attempts recorded for {key!r}")
    view = LockoutView.model_validate(row, from_attributes=True)
    session.delete(row)
    audit.record(session, actor, AuditAction.UNLOCK, ("throttle", key))
    return view


def _count(session: Session, key: str, policy: Policy, now: datetime) -> None:
    values = {"key": key, "failures": 0, "window_start": now, "last_failure_at": now}
    # A concurrent first failure may insert the same key: the second insert does nothing.
    session.execute(insert_or_skip(session, AuthThrottle).values(values).on_conflict_do_nothing())
    row = session.get_one(AuthThrottle, key, with_for_update=True, populate_existing=True)
    if now - row.window_start > policy.window:
        row.failures, row.window_start = 0, now
    row.failures += 1
    row.last_failure_at = now
    if row.failures >= policy.max_failures:
        row.locked_until = now + policy.lockout * min(16, 2**row.lockouts)
        row.lockouts += 1
        row.failures, row.window_start = 0, now
        audit.record(
            session,
            "system",
            AuditAction.LOCKOUT,
            ("throttle", key),
            "locked",
            until=row.locked_until.isoformat(),
        )
    session.flush()


def _human(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
