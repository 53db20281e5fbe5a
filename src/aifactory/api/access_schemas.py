"""Request bodies of the access path."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aifactory.api.params import FederationDate
from aifactory.domain.enums import ResearchKind
from aifactory.domain.proposal_sections import MAX_ROWS, ResourceRow, Sections
from aifactory.services.hosting import HostingProposal
from aifactory.services.proposals import ProposalInput
from aifactory.settings import SBool, SInt

Hours = Annotated[Decimal, Field(gt=0, le=100_000_000, decimal_places=3)]
Text = Annotated[str, Field(max_length=2000)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EligibilityCheckIn(_In):
    call_id: str = Field(max_length=64)
    organisation: str = Field(min_length=1, max_length=200)
    research_kind: ResearchKind
    start_date: FederationDate | None = None
    duration_months: SInt | None = Field(default=None, ge=1, le=60)
    pi_contract_end: FederationDate | None = None


class HostingIn(HostingProposal):
    """What a hosting proposal proposes: a new factory (hosting entity, city, country, members,
    capacity split, systems and partitions), or a country joining one; funding by source and
    countries new to the registry (``services/hosting.py``)."""


class ProposalCreate(_In):
    call_id: str = Field(max_length=64)
    title: str = Field(min_length=3, max_length=200)
    summary: str = Field(default="", max_length=10_000)
    organisation: str = Field(min_length=1, max_length=200)
    research_kind: ResearchKind
    gpu_hours: Hours | None = None
    duration_months: SInt | None = Field(default=None, ge=1, le=60)
    start_date: FederationDate | None = None
    pi_contract_end: FederationDate | None = None
    partition: str | None = Field(default=None, max_length=201, description="SYSTEM/PARTITION")
    hosting: HostingIn | None = None
    resources: list[ResourceIn] = Field(
        default_factory=list,
        max_length=MAX_ROWS,
        description="GPU-hours per SYSTEM/PARTITION; their sum is gpu_hours, the first row's "
        "partition is partition",
    )
    sections: Sections | None = Field(
        default=None, description="team, technical plan, data plan, ethics self-assessment"
    )

    def as_input(self) -> ProposalInput:
        return ProposalInput(
            **self.model_dump(exclude={"hosting", "resources", "sections"}),
            hosting=self.hosting.stored() if self.hosting else None,
            resources=tuple(ResourceRow.model_validate(r.model_dump()) for r in self.resources),
            sections=self.sections,
        )


class ResourceIn(_In):
    partition: str = Field(min_length=3, max_length=201, description="SYSTEM/PARTITION")
    gpu_hours: Hours
    justification: str = Field(min_length=1, max_length=4000)


class CommentIn(_In):
    comment: Text = ""


class AssessmentIn(_In):
    feasible: SBool
    gpu_hours: Hours | None = None
    partition: str | None = Field(default=None, max_length=201)
    comment: Text = ""


class ReviewerIn(_In):
    username: str = Field(min_length=1, max_length=64)


class ReviewIn(_In):
    scores: dict[Annotated[str, Field(max_length=64)], Annotated[Decimal, Field(ge=-1000, le=1000)]]
    comment: Text = ""


class DecisionIn(_In):
    accept: SBool
    comment: Text = ""


class CutoffDecisionIn(_In):
    cutoff: FederationDate
