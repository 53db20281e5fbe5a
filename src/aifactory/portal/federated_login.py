"""Federated sign-in in the portal: off to the OpenID provider, and back at ``/auth/callback``.

Every failure (provider down, an unknown, expired or reused sign-in, a refused code, a token
that does not verify, a disabled account) shows the sign-in page with what went wrong, and is
recorded in the audit log; nothing here answers 500.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.errors import AIFactoryError, BackendUnavailable, Forbidden, Invalid, NotFound
from aifactory.portal.auth import FORM_COOKIE_AGE, login_page, safe_next
from aifactory.portal.web import (
    FORM_COOKIE,
    SESSION_COOKIE,
    MaybeUser,
    PortalRoute,
    form_secret,
    redirect,
    set_cookie,
)
from aifactory.services import federated, oidc
from aifactory.services.oidc import CALLBACK_PATH, OidcConfig
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
Param = Annotated[str, Query(max_length=2048)]
#: The page's status for each kind of failure (the provider failing is a bad gateway).
STATUS: dict[type[AIFactoryError], int] = {
    BackendUnavailable: 502,
    Invalid: 400,
    Forbidden: 403,
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


@router.get("/login/federated")
def start(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    user: MaybeUser,
    next: Annotated[str, Query(max_length=500)] = "/",
) -> Response:
    """Public: send the browser to the provider (the pending login is kept in the database)."""
    cfg = _config(settings)
    if user is not None:
        return redirect(safe_next(next))
    secret, fresh = form_secret(request)
    try:
        url = federated.begin(
            session, cfg, _redirect_uri(request, cfg), safe_next(next), secret, now
        )
    except BackendUnavailable as exc:
        federated.record_failure(session, exc)
        response = login_page(request, next, exc.message, status=502)
    else:
        response = redirect(url)
    if fresh:
        set_cookie(response, request, FORM_COOKIE, secret, FORM_COOKIE_AGE)
    return response


@router.get(CALLBACK_PATH)
def callback(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    state: Param = "",
    code: Param = "",
    error: Param = "",
) -> Response:
    """Public: the provider sends the browser back here with a code (or an error)."""
    cfg = _config(settings)
    next_url = "/"
    try:
        pending = federated.consume(session, state, request.cookies.get(FORM_COOKIE, ""), now)
        next_url = pending.next_url
        if error or not code:
            raise federated.refused(error or "no code")
        with session.begin_nested():  # a failure leaves nothing half made
            started = federated.finish(session, cfg, pending, code, now)
    except AIFactoryError as exc:
        federated.record_failure(session, exc)
        shown = exc.details[0].message if exc.details else exc.message  # no "invalid state:"
        return login_page(request, next_url, shown, status=_status(exc))
    response = redirect(safe_next(pending.next_url))
    age = int((started.expires_at - now).total_seconds())
    set_cookie(response, request, SESSION_COOKIE, started.secret, age)
    return response
