"""Federated sign-in in the portal: off to the OpenID provider, and back at ``/auth/callback``.

Every failure (provider down, an unknown, expired or reused sign-in, a refused code, a token
that does not verify, a disabled account) shows the sign-in page with what went wrong, and is
recorded in the audit log; nothing here answers 500.

The routes take the ``Database`` and open short transactions themselves: the provider may take
seconds to answer (four calls at a callback), and no transaction (on SQLite, the database-wide
write lock) may stay open meanwhile. The callback commits the used-up pending login first, asks
the provider with no session open, then provisions the user in a new transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SettingsDep, get_db
from aifactory.db.engine import Database
from aifactory.errors import (
    AIFactoryError,
    BackendUnavailable,
    Forbidden,
    Invalid,
    NotFound,
    TooManyAttempts,
)
from aifactory.portal.auth import FORM_COOKIE_AGE, login_page, safe_next
from aifactory.portal.web import (
    FORM_COOKIE,
    SESSION_COOKIE,
    PortalRoute,
    form_secret,
    redirect,
    set_cookie,
    signed_in,
)
from aifactory.services import federated, oidc
from aifactory.services.federated import Pending
from aifactory.services.oidc import CALLBACK_PATH, OidcConfig
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
Param = Annotated[str, Query(max_length=2048)]
DbDep = Annotated[Database, Depends(get_db)]
#: The page's status for each kind of failure (the provider failing is a bad gateway).
STATUS: dict[type[AIFactoryError], int] = {
    BackendUnavailable: 502,
    Invalid: 400,
    Forbidden: 403,
    TooManyAttempts: 429,
}


def _config(settings: Settings) -> OidcConfig:
    cfg = oidc.config_of(settings)
    if cfg is None:
        raise NotFound("federated sign-in is not configured on this portal")
    return cfg


def _redirect_uri(request: Request, cfg: OidcConfig) -> str:
    return cfg.redirect_url or str(request.base_url).rstrip("/") + CALLBACK_PATH


def _status(exc: AIFactoryError) -> int:
    return next((code for kind, code in STATUS.items() if isinstance(exc, kind)), 401)


def _refuse(db: Database, request: Request, next_url: str, exc: AIFactoryError) -> Response:
    """The sign-in page saying what went wrong, the failure audited in a transaction of its own."""
    with db.session() as session:
        federated.record_failure(session, exc)
    return _page(request, next_url, exc)


def _page(request: Request, next_url: str, exc: AIFactoryError) -> Response:
    shown = exc.details[0].message if exc.details else exc.message  # no "invalid state:"
    return login_page(request, next_url, shown, status=_status(exc))


@router.get("/login/federated")
def start(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    next: Annotated[str, Query(max_length=500)] = "/",
) -> Response:
    """Public: send the browser to the provider (the pending login is kept in the database).
    Throttled per address: too many sign-ins started and not finished get 429 for a while."""
    cfg = _config(settings)
    with db.session() as session:
        user = signed_in(request, session, now)
    if user is not None:
        return redirect(safe_next(next))
    secret, fresh = form_secret(request)
    try:
        provider = federated.provider(cfg)  # no transaction open while the provider answers
        with db.session() as session:
            url = federated.begin(
                session,
                provider,
                cfg,
                _redirect_uri(request, cfg),
                safe_next(next),
                secret,
                federated.start_limits(settings),
                now,
            )
    except (BackendUnavailable, TooManyAttempts) as exc:
        response = _refuse(db, request, next, exc)
    else:
        response = redirect(url)
    if fresh:
        set_cookie(response, request, FORM_COOKIE, secret, FORM_COOKIE_AGE)
    return response


def _take(db: Database, state: str, browser: str, now: datetime) -> Pending | AIFactoryError:
    """The pending login of ``state``, or why not; committed at once either way, so the state is
    used up (even by a refused attempt) before the provider is asked anything."""
    with db.session() as session:
        try:
            return federated.consume(session, state, browser, now)
        except AIFactoryError as exc:
            federated.record_failure(session, exc)
            return exc


@router.get(CALLBACK_PATH)
def callback(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    now: NowDep,
    state: Param = "",
    code: Param = "",
    error: Param = "",
) -> Response:
    """Public: the provider sends the browser back here with a code (or an error)."""
    cfg = _config(settings)
    pending = _take(db, state, request.cookies.get(FORM_COOKIE, ""), now)
    if isinstance(pending, AIFactoryError):
        return _page(request, "/", pending)
    try:
        if error or not code:
            raise federated.refused(error or "no code")
        verified = federated.verify(cfg, pending, code, now)  # the provider's calls, no session
        with db.session() as session:  # a failure rolls back: nothing is left half made
            started = federated.complete(session, verified, federated.start_limits(settings), now)
    except AIFactoryError as exc:
        return _refuse(db, request, pending.next_url, exc)
    response = redirect(safe_next(pending.next_url))
    age = int((started.expires_at - now).total_seconds())
    set_cookie(response, request, SESSION_COOKIE, started.secret, age)
    return response
