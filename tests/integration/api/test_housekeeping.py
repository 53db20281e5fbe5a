"""The broker forgets expired idempotency keys, ended portal sessions and old failed sign-ins."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import AuthThrottle, IdempotencyKey, PortalSession, User
from aifactory.db.types import utcnow
from aifactory.services import housekeeping
from aifactory.testing.people import Person


def test_expired_rows_go_and_live_ones_stay(db: Database, applicant: Person) -> None:
    now = utcnow()
    with db.session() as s:
        uid = s.scalars(select(User.id).where(User.username == "anna")).one()
        for n, age in enumerate((timedelta(hours=25), timedelta(hours=23))):
            s.add(
                IdempotencyKey(
                    user_id=uid,
                    scope="jobs",
                    key=f"k{n}",
                    request_hash="h",
                    object_id=1,
                    created_at=now - age,
                )
            )
        for n, end in enumerate((now - timedelta(minutes=1), now + timedelta(hours=1))):
            s.add(
                PortalSession(token_hash=f"{n:064d}", user_id=uid, created_at=now, expires_at=end)
            )
        old = now - timedelta(days=2)
        s.add(AuthThrottle(key="user:old", failures=3, window_start=old, last_failure_at=old))
        s.add(
            AuthThrottle(
                key="user:locked",
                failures=0,
                window_start=old,
                last_failure_at=old,
                locked_until=now + timedelta(hours=1),
            )
        )
        s.add(AuthThrottle(key="user:recent", failures=1, window_start=now, last_failure_at=now))
    with db.session() as s:
        counts = housekeeping.purge(s, now)
    assert counts == {"idempotency_keys": 1, "portal_sessions": 1, "auth_throttles": 1}
    with db.session() as s:
        assert s.scalars(select(IdempotencyKey.key)).all() == ["k1"]
        assert s.scalar(select(func.count()).select_from(PortalSession)) == 1
        assert set(s.scalars(select(AuthThrottle.key))) == {"user:locked", "user:recent"}
