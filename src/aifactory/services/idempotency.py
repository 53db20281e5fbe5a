"""Idempotency keys: a create request sent again with the same key returns the original object.

A key belongs to one user and one scope (``jobs``, ``proposals``) and holds for 24 hours; an
older key is forgotten (its row is deleted when the key comes back) and may be used again.

The key's row is claimed (inserted) *before* the object is created and bound to the object's id
afterwards, all in the request's transaction: the key and the object commit together or not at
all. The claim is an ``INSERT ... ON CONFLICT DO NOTHING`` on the key's unique constraint, so a
concurrent request with the same key waits for the first one's transaction (a row lock on
PostgreSQL, the write lock on SQLite): when that commits, the claim inserts nothing and the
waiting request reads the winner's row and replays its object; when it rolls back, the waiting
request claims the key and creates. No error aborts the transaction, so no savepoint is needed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from aifactory.db.inserts import insert_or_skip
from aifactory.db.models import IdempotencyKey
from aifactory.errors import Conflict, Invalid

HEADER = "Idempotency-Key"
TTL = timedelta(hours=24)
MAX_KEY_LENGTH = 255
JOBS = "jobs"
PROPOSALS = "proposals"

_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


class HasId(Protocol):
    @property
    def id(self) -> int: ...


V = TypeVar("V", bound=HasId)


def once(
    session: Session,
    user_id: int,
    scope: str,
    key: str | None,
    request: Any,
    now: datetime,
    create: Callable[[], V],
    replay: Callable[[int], V],
) -> tuple[V, bool]:
    """``create()`` the object, or ``replay(id)`` the one this key created in the last 24 h.

    Args:
        request: The request body as JSON data; a key reused with a different body is refused.

    Returns:
        The object's view and whether it was replayed.
    """
    if key is None:
        return create(), False
    check_key(key)
    digest = request_hash(request)
    row_id, original = claim(session, user_id, scope, key, digest, now)
    if original is not None:
        return replay(original), True
    made = create()
    session.execute(
        update(IdempotencyKey).where(IdempotencyKey.id == row_id).values(object_id=made.id)
    )
    return made, False


def check_key(key: str) -> None:
    """1 to 255 printable ASCII characters, or an error naming the header."""
    if not key:
        raise Invalid.field(HEADER, "min_length", "must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise Invalid.field(HEADER, "max_length", f"at most {MAX_KEY_LENGTH} characters")
    if not _PRINTABLE_ASCII.fullmatch(key):
        raise Invalid.field(HEADER, "printable_ascii", "only printable ASCII characters")


def request_hash(request: Any) -> str:
    """SHA-256 (hex) of the request body in canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(
    session: Session, user_id: int, scope: str, key: str, digest: str, now: datetime
) -> tuple[int | None, int | None]:
    """Claim the key: ``(row id, None)`` to create, or ``(None, object id)`` to replay."""
    found = _find(session, user_id, scope, key)
    if found is not None and found.created_at > now - TTL:
        return None, _original(found, key, digest)
    if found is not None:  # expired: forget it, the key is free again
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == found.id))
    statement = (
        insert_or_skip(session, IdempotencyKey)
        .values(
            user_id=user_id,
            scope=scope,
            key=key,
            request_hash=digest,
            object_id=0,  # bound to the created object's id before the commit
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "scope", "key"])
        .returning(IdempotencyKey.id)
    )
    row_id: int | None = session.execute(statement).scalar_one_or_none()
    if row_id is not None:
        return row_id, None
    winner = _find(session, user_id, scope, key)  # a concurrent request's, committed by now
    if winner is None:
        raise Conflict(f"{HEADER} {key!r} is being reused concurrently; send the request again")
    return None, _original(winner, key, digest)


def _find(session: Session, user_id: int, scope: str, key: str) -> Any:
    query = select(
        IdempotencyKey.id,
        IdempotencyKey.request_hash,
        IdempotencyKey.object_id,
        IdempotencyKey.created_at,
    ).where(
        IdempotencyKey.user_id == user_id,
        IdempotencyKey.scope == scope,
        IdempotencyKey.key == key,
    )
    return session.execute(query).one_or_none()


def _original(found: Any, key: str, digest: str) -> int:
    if found.request_hash != digest:
        msg = f"{key!r} was used with a different request in the last 24 hours; use a new key"
        raise Invalid.field(HEADER, "reused_with_different_request", msg)
    object_id: int = found.object_id
    return object_id
