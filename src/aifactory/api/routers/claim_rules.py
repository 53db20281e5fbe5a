"""Federated sign-in administration: claim-to-role rules and organisations' home domains."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from aifactory.api.deps import CurrentPrincipal, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath
from aifactory.services import claim_rules, federated
from aifactory.services.claim_rule_views import ClaimRuleIn, ClaimRuleView
from aifactory.services.permissions import Action, authorize

router = APIRouter(tags=["federated sign-in"], responses=ERROR_RESPONSES)
DOMAIN = r"^[A-Za-z0-9]([A-Za-z0-9\-]{0,62})(\.[A-Za-z0-9][A-Za-z0-9\-]{0,62})+$"


class HomeDomainIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    home_domain: str | None = Field(default=None, max_length=253, pattern=DOMAIN)


class HomeDomainView(BaseModel):
    organisation: str
    home_domain: str | None


@router.get("/admin/claim-rules")
def list_claim_rules(session: SessionDep, who: CurrentPrincipal) -> list[ClaimRuleView]:
    """The rules that turn claims of a federated sign-in into roles."""
    authorize(who, Action.MANAGE_IDENTITY)
    return claim_rules.list_rules(session, who)


@router.post("/admin/claim-rules", status_code=201)
def add_claim_rule(body: ClaimRuleIn, session: SessionDep, who: CurrentPrincipal) -> ClaimRuleView:
    """Add a rule; people get its role at their next federated sign-in."""
    authorize(who, Action.MANAGE_IDENTITY)
    return claim_rules.add_rule(session, who, body)


@router.delete("/admin/claim-rules/{rule_id}")
def remove_claim_rule(rule_id: IdPath, session: SessionDep, who: CurrentPrincipal) -> ClaimRuleView:
    """Remove a rule; the roles it gave go at each person's next federated sign-in."""
    authorize(who, Action.MANAGE_IDENTITY)
    return claim_rules.remove_rule(session, who, rule_id)


@router.put("/admin/organisations/{org_id}/home-domain")
def set_home_domain(
    org_id: IdPath, body: HomeDomainIn, session: SessionDep, who: CurrentPrincipal
) -> HomeDomainView:
    """Set or clear (``null``) the domain a provider's ``schac_home_organization`` claim names
    for this organisation: people signing in from it for the first time become its members."""
    authorize(who, Action.MANAGE_IDENTITY)
    name = federated.set_home_domain(session, who, org_id, body.home_domain)
    return HomeDomainView(
        organisation=name, home_domain=body.home_domain and body.home_domain.lower()
    )
