"""Sign in (username and password, or an API token) and sign out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.errors import TooManyAttempts, Unauthenticated
from aifactory.portal.web import (
    FORM_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    MaybeUser,
    PortalRoute,
    anonymous_form,
    form_secret,
    redirect,
    render,
    set_cookie,
)
from aifactory.services import oidc, sessions

router = APIRouter(route_class=PortalRoute)
FORM_COOKIE_AGE = 2 * 3600


def safe_next(target: str) -> str:
    """Only local paths: no scheme, no host, no protocol-relative or backslash tricks."""
    ok = target.startswith("/") and not target.startswith("//") and "\\" not in target
    return target if ok and len(target) < 500 else "/"


def federated_label(request: Request) -> str | None:
    """The provider's name on the sign-in button, or None without federated sign-in."""
    cfg = oidc.config_of(request.app.state.settings)
    return cfg.label if cfg is not None else None


def login_page(
    request: Request, next_url: str, error: str = "", username: str = "", status: int = 200
) -> Response:
    secret, fresh = form_secret(request)
    context = {
        "title": "Sign in",
        "next": safe_next(next_url),
        "login_error": error,
        "username": username,
        "form_csrf": sessions.csrf_for(secret),
        "federated": federated_label(request),
    }
    response = render(request, "login.html", context, status)
    if fresh:
        set_cookie(response, request, FORM_COOKIE, secret, FORM_COOKIE_AGE)
    return response


@router.get("/login")
def login_form(request: Request, user: MaybeUser, next: str = "/") -> Response:
    """Public: the sign-in page itself."""
    if user is not None:
        return redirect(safe_next(next))
    return login_page(request, next)


@router.post("/login")
@anonymous_form
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    method: Annotated[str, Form(max_length=16)] = "password",
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Public: checks the credentials and starts a session (a fresh cookie every time).

    Failures are throttled per account and per address; a locked one gets 429 and when to
    try again, even with the right password."""
    secret = token.strip() if method == "token" else password
    try:
        started = sessions.sign_in(session, settings, method, username.strip(), secret, now)
    except TooManyAttempts as exc:
        return login_page(request, next, exc.message, username, status=429)
    except Unauthenticated as exc:
        return login_page(request, next, exc.message, username, status=401)
    response = redirect(safe_next(next))
    age = int((started.expires_at - now).total_seconds())
    set_cookie(response, request, SESSION_COOKIE, started.secret, age)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Ends the session server-side and clears the cookie."""
    sessions.end(session, request.cookies.get(SESSION_COOKIE, ""))
    response = redirect("/login?notice=signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
