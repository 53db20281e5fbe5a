"""Request dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.db.types import utcnow
from aifactory.errors import Unauthenticated
from aifactory.services import access, audit, identity, throttle
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.services.sites import capacity_map
from aifactory.services.token_cache import TOKENS
from aifactory.settings import Settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent."""
    with get_db(request).session() as session:
        access.sync_calls(session)  # a factory added elsewhere gets its calls (cheap; throttled)
        yield session


async def get_now(request: Request) -> datetime:  # async: no thread hop for a clock read
    """The current time; tests replace ``app.state.clock`` to move through cut-offs."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


NowDep = Annotated[datetime, Depends(get_now)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False, description="API token from `aif admin create-token`")


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The token's owner, checked in a short transaction of its own (or, when the same token
    was checked in the last few seconds, taken from ``services/token_cache.py`` without
    leaving the event loop).

    Unknown tokens count against the caller's address (``services/throttle.py``); after too
    many, unknown tokens from there get 429 until the lock ends. A valid token still works from
    a locked address: 256-bit tokens cannot be guessed, and one broken script behind a shared
    NAT must not lock out everyone else there. The count commits although the request fails.
    """
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API token: send 'Authorization: Bearer <token>'")
    now = utcnow()  # tokens expire and locks end in real time, whatever the app's clock says
    known = TOKENS.get(identity.hash_token(credentials.credentials), now)
    if known is not None:
        return known
    return await run_in_threadpool(_authenticate, request, credentials.credentials, now)


def _authenticate(request: Request, token: str, now: datetime) -> Principal:
    with get_db(request).session() as session:
        try:
            return identity.authenticate(session, token, now, TOKENS)
        except Unauthenticated as exc:
            refused = exc
            if exc.extra.get("guess"):
                limits = throttle.policies(get_settings(request), audit.origin.get())
                throttle.check(session, list(limits), now)
                throttle.fail(session, limits, now)
                prefix = token[:12]
                audit.record(session, "anonymous", AuditAction.TOKEN_REJECTED, ("token", prefix))
    raise refused


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def site_capacity(request: Request, session: Session) -> dict[str, int | None]:
    """The sites' GPU capacity, read once per app (sites.yaml does not change at run time)."""
    cached: dict[str, int | None] | None = getattr(request.app.state, "capacity", None)
    if cached is None:
        cached = capacity_map(session, request.app.state.settings)
        request.app.state.capacity = cached
    return cached


IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description=(
            "Any 1-255 printable ASCII characters unique to this create request (a UUID). "
            "Sent again by the same user within 24 hours, it creates nothing and returns the "
            "original object with `Idempotent-Replayed: true`; with a different body it is "
            "refused (422). Retry a request whose answer was lost with the same key."
        ),
    ),
]
#: The 201 response's header on a replay, for the OpenAPI document.
REPLAYED: dict[int | str, dict[str, Any]] = {
    201: {
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true` when an earlier request with this Idempotency-Key "
                "created the object returned",
                "schema": {"type": "string"},
            }
        }
    }
}
