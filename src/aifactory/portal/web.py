"""What every portal page shares: templates, the signed-in user, CSRF, error pages, form errors.

Pages call the services directly in the request's one database session (``get_session``).
Errors the services raise become HTML: a sign-in redirect, a 403/404 page, or messages next to
the form fields named in ``Invalid.details`` (see ``forms.FormErrors``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from decimal import Decimal
from importlib.resources import files
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader

from aifactory.api.deps import NowDep, SessionDep
from aifactory.api.errors import STATUS
from aifactory.db.types import utcnow
from aifactory.domain.enums import Role
from aifactory.domain.words import plural
from aifactory.errors import (
    AIFactoryError,
    FieldError,
    Forbidden,
    Invalid,
    Unauthenticated,
)
from aifactory.portal.labels import amount, human, label, limits_text
from aifactory.services import health, sessions
from aifactory.services.sessions import SignedIn

SESSION_COOKIE = "aif_session"
FORM_COOKIE = "aif_form"  # anonymous CSRF secret for the sign-in form
T = TypeVar("T")
#: Fixed notices shown after a redirect (only keys travel in the URL, never user text).
NOTICES = {
    "signed_out": "You are signed out.",
    "submitted": "Proposal submitted: the service-level clock has started.",
    "withdrawn": "Proposal withdrawn.",
    "assessed": "Technical assessment recorded.",
    "reviewed": "Review saved.",
    "assigned": "Reviewer assigned.",
    "decided": "Decision recorded.",
    "cancelled": "Cancellation requested.",
    "submitted_job": "Job submitted.",
    "welcome": "Welcome: your account is ready. Register your organisation to apply for compute.",
    "organisation_saved": "Organisation saved.",
    "joined": "You joined the project.",
    "invitation_revoked": "Invitation revoked.",
    "member_removed": "Member removed.",
    "token_revoked": "Token revoked.",
}


def _hours(value: Decimal | float | int | None) -> str:
    if value is None:
        return "-"
    text = f"{Decimal(str(value)):,.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _when(value: datetime | date | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return value.isoformat()


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(files("aifactory.portal") / "templates")),
        autoescape=True,  # every value is escaped unless a template marks trusted markup
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(hours=_hours, when=_when, label=label, eur=lambda v: f"€{int(v):,}")
    env.filters.update(human=human, amount=amount, limits=limits_text)  # labels.py
    env.filters["plural"] = plural
    return env


ENV = _environment()


# --- the signed-in user ----------------------------------------------------------------------


def signed_in(request: Request, session: SessionDep, now: NowDep) -> SignedIn | None:
    """The session behind the cookie, or None (no cookie, expired, signed out)."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    try:
        user = sessions.resolve(session, secret, now)
    except Unauthenticated:
        return None
    request.state.user = user
    return user


MaybeUser = Annotated[SignedIn | None, Depends(signed_in)]


def require_user(user: MaybeUser) -> SignedIn:
    if user is None:
        raise Unauthenticated("sign in to see this page")
    return user


CurrentUser = Annotated[SignedIn, Depends(require_user)]


def require_role(user: SignedIn, *roles: Role) -> None:
    """Page-level gate; federation admins pass every gate. The services check again."""
    if user.principal.is_admin or any(user.principal.has(r) for r in roles):
        return
    raise Forbidden(f"this page needs one of the roles: {', '.join(roles)}")


# --- rendering -------------------------------------------------------------------------------


def nav(user: SignedIn | None) -> list[tuple[str, str]]:
    items = [("/", "Overview"), ("/calls", "Calls")]
    if user is None:
        return items
    items = [("/", "Home"), ("/federation", "Federation"), ("/calls", "Calls")]
    who = user.principal
    items += [("/proposals", "My proposals"), ("/projects", "Projects"), ("/reports", "Reports")]
    gates = [("/review", "Review", Role.REVIEWER), ("/operate", "Operate", Role.FACTORY_OPERATOR)]
    gates.append(("/plan", "Plan", Role.FACTORY_OPERATOR))
    items += [(href, text) for href, text, role in gates if who.is_admin or who.has(role)]
    if who.is_admin:
        items += [("/decisions", "Decisions"), ("/audit", "Audit")]
    items.append(("/sim", "Simulator"))
    items.append(("/account", "Account"))
    return items


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    status: int = 200,
    user: SignedIn | None = None,
) -> HTMLResponse:
    user = user or getattr(request.state, "user", None)
    alerts = _ops_alerts(request, user)
    return _page(request, template, {"ops_alerts": alerts, **(context or {})}, status, user)


def _page(
    request: Request, template: str, context: dict[str, Any], status: int, user: SignedIn | None
) -> HTMLResponse:
    base: dict[str, Any] = {
        "request": request,
        "user": user,
        "nav": nav(user),
        "path": request.url.path,
        "csrf_token": user.csrf_token if user else "",
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "ops_alerts": [],
        "errors": {},
        "form_errors": [],
    }
    html = ENV.get_template(template).render({**base, **context})
    return HTMLResponse(html, status_code=status)


def _ops_alerts(request: Request, user: SignedIn | None) -> list[str]:
    """For staff: controllers down, sites unreachable, hand-over stuck (empty for others)."""
    if user is None:
        return []
    who = user.principal
    if not (who.is_admin or who.has(Role.FACTORY_OPERATOR)):
        return []
    settings = request.app.state.settings
    with request.app.state.db.session() as s:
        return health.alerts(health.system_health(s, who, utcnow(), settings.lease_ttl_s))


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path if request.method == "GET" else "/"
    if request.url.query and request.method == "GET":
        target += "?" + request.url.query
    return redirect("/login?next=" + quote(target, safe=""))


#: Headings of the error pages, by HTTP status.
ERROR_TITLES = {
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    422: "Invalid input",
    500: "Something went wrong",
    503: "Try again shortly",
}


def error_page(request: Request, exc: AIFactoryError) -> Response:
    if isinstance(exc, Unauthenticated):
        return login_redirect(request)
    status = STATUS.get(exc.code, 400)
    return render(request, "error.html", _error_context(status, exc.message, exc.details), status)


def status_page(
    request: Request,
    status: int,
    message: str,
    user: SignedIn | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """An error page that reads nothing from the database (unknown addresses, failures)."""
    user = user or getattr(request.state, "user", None)
    response = _page(request, "error.html", _error_context(status, message, []), status, user)
    response.headers.update(headers or {})
    return response


def _error_context(status: int, message: str, details: list[FieldError]) -> dict[str, Any]:
    title = ERROR_TITLES.get(status, "Error")
    return {"title": title, "status": status, "message": message, "details": details}


# --- CSRF and the route class ----------------------------------------------------------------


def anonymous_form(endpoint: Callable[..., T]) -> Callable[..., T]:
    """Mark a POST endpoint used before sign-in (its CSRF token is bound to a form cookie)."""
    endpoint.anonymous_form = True  # type: ignore[attr-defined]
    return endpoint


async def check_csrf(request: Request, anonymous: bool) -> None:
    """Every POST carries ``csrf_token``; it must match the session's (or the form cookie's)."""
    form = await request.form()
    given = str(form.get("csrf_token", ""))
    cookie = FORM_COOKIE if anonymous else SESSION_COOKIE
    secret = request.cookies.get(cookie, "")
    if not secret or not sessions.same_token(sessions.csrf_for(secret), given):
        raise Forbidden("the form's security token is missing or stale; reload the page and retry")


class PortalRoute(APIRoute):
    """Checks CSRF on every POST and turns service errors into HTML pages or redirects."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        anonymous = bool(getattr(self.endpoint, "anonymous_form", False))

        async def run(request: Request) -> Response:
            try:
                if request.method == "POST":
                    await check_csrf(request, anonymous)
                return await handler(request)
            except AIFactoryError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                return error_page(request, Invalid(f"invalid request: {exc.errors()[0]['msg']}"))

        return run


def form_secret(request: Request) -> tuple[str, bool]:
    """The anonymous form secret from the cookie, or a new one (True: set the cookie)."""
    existing = request.cookies.get(FORM_COOKIE)
    return (existing, False) if existing else (secrets.token_urlsafe(32), True)


def set_cookie(response: Response, request: Request, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
