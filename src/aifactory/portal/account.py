"""Your account: profile, organisations, and your API tokens (create one, see it once, revoke)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.errors import NotFound
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.organisations_page import ORG_TYPES, SME_SIZES
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import identity, organisations
from aifactory.services.sessions import SignedIn
from aifactory.services.views import NewToken

router = APIRouter(route_class=PortalRoute)
FIELDS = {"name", "ttl_days"}
MAX_TTL_DAYS = 3650


def _page(
    request: Request,
    session: Session,
    user: SignedIn,
    made: NewToken | None = None,
    errors: FormErrors | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    who = user.principal
    context: dict[str, Any] = {
        "title": "My account",
        "me": identity.get_user(session, who.username),
        "organisations": [  # admins see every organisation: keep the ones they belong to
            o for o in organisations.list_visible(session, who) if who.username in o.members
        ],
        "tokens": sorted(
            identity.list_tokens(session, who.username), key=lambda t: t.id, reverse=True
        ),
        "types": ORG_TYPES,
        "sizes": SME_SIZES,
        "made": made,
        "form": form or {"name": "", "ttl_days": "30"},
        **(errors or FormErrors(FIELDS)).context(),
    }
    return render(request, "account.html", context, status)


@router.get("/account")
def account(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    """Signed in: who you are, your organisations and your API tokens."""
    return _page(request, session, user)


@router.post("/account/tokens")
def create_token(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    now: NowDep,
    name: Annotated[str, Form(max_length=300)] = "",
    ttl_days: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Mint a token for yourself; its secret is on the page this once."""
    errors = FormErrors(FIELDS)
    label = name.strip()
    if not label or len(label) > 100:
        errors.add("name", "give the token a name (at most 100 characters)")
    parsed = errors.parse("ttl_days", ttl_days, int)
    days = settings.token_ttl_days if parsed is None else parsed
    if not 1 <= days <= MAX_TTL_DAYS:
        errors.add("ttl_days", f"from 1 to {MAX_TTL_DAYS} days")
    made = None
    if not errors:
        who = user.principal.username
        made = attempt(
            session,
            errors,
            lambda: identity.create_token(session, who, label, days, now, actor=who),
        )
    form = {"name": name, "ttl_days": ttl_days}
    status = 201 if made else 422
    return _page(request, session, user, made, errors, form if made is None else None, status)


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(token_id: int, session: SessionDep, user: CurrentUser) -> Response:
    """Revoke one of your own tokens (and those minted with it); others' are unknown here."""
    token = identity.get_token(session, token_id)
    if token.username != user.principal.username:
        raise NotFound(f"token {token_id} not found")
    identity.revoke_token(session, token_id, user.principal.username)
    return redirect("/account?notice=token_revoked")
