"""Request dependencies: the database session and the authenticated principal."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.errors import Unauthenticated
from aifactory.services import identity
from aifactory.services.permissions import Principal
from aifactory.services.sites import capacity_map
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
        yield session


def get_now(request: Request) -> datetime:
    """The current time; tests replace ``app.state.clock`` to move through cut-offs."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


NowDep = Annotated[datetime, Depends(get_now)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
_bearer = HTTPBearer(auto_error=False, description="API token from `aif admin create-token`")


def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing API token: send 'Authorization: Bearer <token>'")
    return identity.authenticate(session, credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def site_capacity(request: Request, session: Session) -> dict[str, int | None]:
    """The sites' GPU capacity, read once per app (sites.yaml does not change at run time)."""
    cached: dict[str, int | None] | None = getattr(request.app.state, "capacity", None)
    if cached is None:
        cached = capacity_map(session, request.app.state.settings)
        request.app.state.capacity = cached
    return cached
