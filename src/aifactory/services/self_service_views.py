"""Read and input models of self-service (organisations, invitations): pydantic only, so the
client and the CLI load them without the server's libraries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from aifactory.domain.enums import OrganisationType
from aifactory.services.views import OrganisationView

MAX_LINKS = 50
SInt = Annotated[int, Strict()]  # JSON true is not a number


class EnterpriseLink(BaseModel):
    """A partner or linked enterprise: the share (0-1) held between it and the organisation."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    share: Decimal = Field(ge=0, le=1, max_digits=6, decimal_places=5)
    staff: SInt = Field(default=0, ge=0, le=10_000_000)
    turnover_eur: SInt = Field(default=0, ge=0, le=10**13)
    balance_sheet_eur: SInt = Field(default=0, ge=0, le=10**13)


class OrganisationInput(BaseModel):
    """Everything a registration states; ``None`` figures are unknown (not an SME claim)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    type: OrganisationType
    country_code: str = Field(pattern=r"^[A-Z]{2}$")
    staff_headcount: SInt | None = Field(default=None, ge=0, le=10_000_000)
    annual_turnover_eur: SInt | None = Field(default=None, ge=0, le=10**13)
    balance_sheet_eur: SInt | None = Field(default=None, ge=0, le=10**13)
    enterprise_links: list[EnterpriseLink] = Field(default_factory=list, max_length=MAX_LINKS)


class LinkView(EnterpriseLink):
    relation: str


class SmeVerdict(BaseModel):
    """What the EU SME definition concludes: micro, small, medium, not_sme or unknown."""

    size: str
    reason: str
    contributions: list[str]


class OrganisationDetail(OrganisationView):
    enterprise_links: list[LinkView]
    members: list[str]
    sme: SmeVerdict


class InvitationStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REVOKED = "revoked"
    EXPIRED = "expired"


class InvitationView(BaseModel):
    id: int
    project: str
    project_title: str
    email: str
    role: str
    inviter: str
    created_at: datetime
    expires_at: datetime
    status: InvitationStatus
    accepted_by: str | None


class NewInvitation(InvitationView):
    """A fresh invitation: the only time its link's secret is shown."""

    token: str
    path: str
    url: str | None = None
