"""Claim-rule input and views: pydantic only, so the CLI's client loads no database code."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from aifactory.domain.enums import Role


class ClaimRuleIn(BaseModel):
    """A rule as an admin states it: claim, value (a prefix when it ends with ``*``), role."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    claim: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")
    value: str = Field(min_length=1, max_length=500)
    role: Role
    factory: str | None = Field(default=None, max_length=100)


class ClaimRuleView(BaseModel):
    id: int
    claim: str
    value: str
    role: str
    factory: str | None
    created_by: str
    created_at: datetime
