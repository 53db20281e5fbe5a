"""People's own logins at the factories (site accounts), under which their jobs run.

Authorization is in ``services/site_accounts.py`` (each function calls ``authorize``): admins
and the factory's operators map logins; people read their own, operators those at their sites.
"""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.api.deps import CurrentPrincipal, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.schemas import SiteAccountIn
from aifactory.services import site_accounts
from aifactory.services.site_accounts import SiteAccountView

router = APIRouter(tags=["identity"], responses=ERROR_RESPONSES)


@router.get("/users/{username}/site-accounts")
def list_site_accounts(
    username: str, session: SessionDep, who: CurrentPrincipal
) -> list[SiteAccountView]:
    """The person's logins at the factories (an operator sees those at their own factories)."""
    return site_accounts.list_logins(session, who, username)


@router.put("/users/{username}/site-accounts/{factory}")
def set_site_account(
    username: str, factory: str, body: SiteAccountIn, session: SessionDep, who: CurrentPrincipal
) -> SiteAccountView:
    """Map the person's login at the factory (replaces an earlier one); jobs run under it."""
    return site_accounts.set_login(session, who, username, factory, body.login)


@router.delete("/users/{username}/site-accounts/{factory}", status_code=204)
def remove_site_account(
    username: str, factory: str, session: SessionDep, who: CurrentPrincipal
) -> None:
    """Forget the person's login at the factory; their jobs there are refused from now on."""
    site_accounts.remove_login(session, who, username, factory)
