"""Create your own account (``/signup``): an applicant, signed in at once."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.errors import Invalid, TooManyAttempts
from aifactory.portal.auth import FORM_COOKIE_AGE, safe_next
from aifactory.portal.forms import FormErrors
from aifactory.portal.web import (
    FORM_COOKIE,
    SESSION_COOKIE,
    MaybeUser,
    PortalRoute,
    anonymous_form,
    form_secret,
    redirect,
    render,
    set_cookie,
    status_page,
)
from aifactory.services import sessions, signup
from aifactory.services.signup import SignUp

router = APIRouter(route_class=PortalRoute)
FIELDS = {"username", "email", "full_name", "password"}
Text = Annotated[str, Form(max_length=300)]


def _page(
    request: Request,
    next_url: str,
    form: SignUp,
    errors: FormErrors | None = None,
    status: int = 200,
) -> Response:
    secret, fresh = form_secret(request)
    context = {
        "title": "Create your account",
        "next": safe_next(next_url),
        "form": form,
        "form_csrf": sessions.csrf_for(secret),
        **(errors or FormErrors(FIELDS)).context(),
    }
    response = render(request, "signup.html", context, status)
    if fresh:
        set_cookie(response, request, FORM_COOKIE, secret, FORM_COOKIE_AGE)
    return response


@router.get("/signup")
def signup_form(
    request: Request, user: MaybeUser, settings: SettingsDep, next: str = "/", email: str = ""
) -> Response:
    """Public: the sign-up form (or a page saying sign-up is off)."""
    if user is not None:
        return redirect(safe_next(next))
    if not settings.self_signup:
        return status_page(request, 403, "Self sign-up is turned off here; ask an administrator.")
    return _page(request, next, SignUp("", email[:254], "", ""))


@router.post("/signup")
@anonymous_form
def sign_up(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    now: NowDep,
    username: Text = "",
    email: Text = "",
    full_name: Text = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=500)] = "/",
) -> Response:
    """Public: creates the account and starts a session; refused tries count like sign-ins."""
    form = SignUp(username.strip().lower(), email.strip(), full_name.strip(), password)
    errors = FormErrors(FIELDS)
    try:
        started = signup.sign_up(session, settings, form, now)
    except TooManyAttempts as exc:
        errors.add("", exc.message)
        return _page(request, next, form, errors, 429)
    except Invalid as exc:
        errors.absorb(exc)
        return _page(request, next, form, errors, 422)
    response = redirect(safe_next(next) if next != "/" else "/account?notice=welcome")
    age = int((started.expires_at - now).total_seconds())
    set_cookie(response, request, SESSION_COOKIE, started.secret, age)
    return response
