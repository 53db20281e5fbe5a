"""Forget what has expired: idempotency keys after 24 h, ended portal sessions, old throttles.

The broker runs this once a minute with its other periodic work (``agents/runner.py``); each
statement deletes by a time column (indexed where the table grows with traffic).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import CursorResult, delete, or_
from sqlalchemy.orm import Session

from aifactory.db.models import AuthThrottle, IdempotencyKey, PortalSession
from aifactory.services import idempotency

#: Failures older than this (and no lock in force) are forgotten.
THROTTLE_MEMORY = timedelta(days=1)


def purge(session: Session, now: datetime) -> dict[str, int]:
    """Delete expired rows; returns how many of each kind went."""
    statements = {
        "idempotency_keys": delete(IdempotencyKey).where(
            IdempotencyKey.created_at < now - idempotency.TTL
        ),
        "portal_sessions": delete(PortalSession).where(PortalSession.expires_at <= now),
        "auth_throttles": delete(AuthThrottle).where(
            AuthThrottle.last_failure_at < now - THROTTLE_MEMORY,
            or_(AuthThrottle.locked_until.is_(None), AuthThrottle.locked_until <= now),
        ),
    }
    counts: dict[str, int] = {}
    for name, statement in statements.items():
        result = session.execute(statement)
        counts[name] = result.rowcount if isinstance(result, CursorResult) else 0
    return counts
