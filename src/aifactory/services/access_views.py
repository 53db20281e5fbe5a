"""Read models of the access path: calls, eligibility, proposals, projects, allocations."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from aifactory.domain.proposal_sections import Sections


class CallView(BaseModel):
    id: str
    title: str
    mode: str
    mode_name: str
    factory: str | None
    opens: date
    closes: date | None
    open_today: bool
    next_cutoff: date | None
    upcoming_cutoffs: list[date]
    gpu_hours_limits: str | None
    durations_months: list[int]
    selection: str
    steps: list[str]
    service_level_working_days: int | None
    service_level_counts_from: str | None
    note: str


class RuleView(BaseModel):
    rule: str
    passed: bool
    reason: str


class EligibilityView(BaseModel):
    mode: str
    eligible: bool
    rules: list[RuleView]


class TransitionView(BaseModel):
    actor: str
    at: datetime
    from_status: str
    to_status: str
    comment: str


class ReviewView(BaseModel):
    reviewer: str
    submitted: bool
    scores: dict[str, Decimal] | None
    comment: str


class ResourceView(BaseModel):
    partition: str
    gpu_hours: Decimal
    justification: str


class AttachmentView(BaseModel):
    id: int
    name: str
    size: int
    sha256: str
    uploader: str
    created_at: datetime


class ProposalView(BaseModel):
    id: int
    call_id: str
    mode: str
    factory: str | None
    partition: str | None
    organisation: str
    applicant: str
    title: str
    summary: str
    research_kind: str
    gpu_hours: Decimal | None
    duration_months: int | None
    start_date: date | None
    pi_contract_end: date | None
    status: str
    submitted_at: datetime | None
    cutoff: date | None
    deadline: date | None
    overdue: bool
    assessed_gpu_hours: Decimal | None
    assessed_partition: str | None
    decided_at: datetime | None
    project_code: str | None
    hosting: dict[str, Any] | None
    resources: list[ResourceView] = []
    sections: Sections | None = None
    attachments: list[AttachmentView] = []
    eligibility: list[RuleView] | None
    transitions: list[TransitionView]
    reviews: list[ReviewView]


class LedgerEntryView(BaseModel):
    id: int
    kind: str
    gpu_hours: Decimal
    at: datetime
    actor: str
    job_ref: str | None
    note: str


class AllocationView(BaseModel):
    """One allocation; a federation allocation (``scope`` federation) names no factory, system
    or partition of its own (``factory`` and ``partition`` read ``federation``, ``system`` is
    empty): its hours are usable at every factory that admits the project."""

    id: int
    project_code: str
    scope: str = "partition"
    factory: str
    system: str
    partition: str
    start_date: date
    end_date: date
    status: str
    usage_level: str
    funding: dict[str, Decimal]
    granted: Decimal
    used: Decimal
    reserved: Decimal
    expired: Decimal
    remaining: Decimal


class BalanceView(BaseModel):
    """GPU-hours (normalised) of a project's allocations together."""

    granted: Decimal = Decimal(0)
    used: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)
    expired: Decimal = Decimal(0)
    remaining: Decimal = Decimal(0)


class MemberView(BaseModel):
    username: str
    role: str


class ProjectView(BaseModel):
    code: str
    title: str
    mode: str
    organisation: str
    factory: str | None
    proposal_id: int
    members: list[MemberView]
    allocations: list[AllocationView]
    #: The allocations summed (each keeps its own ledger and balance).
    total: BalanceView = BalanceView()


class DecisionBatchView(BaseModel):
    """What deciding a cut-off did: decided (accepted, rejected) and what still waits, why."""

    call_id: str
    cutoff: date
    accepted: list[int]
    rejected: list[int]
    waiting: dict[int, str]

    def summary(self) -> str:
        """E.g. ``Decided 3: 2 awarded, 1 rejected. 1 waits for reviews (1 of 2 in).``"""
        decided = len(self.accepted) + len(self.rejected)
        text = (
            f"Decided {decided}: {len(self.accepted)} awarded, {len(self.rejected)} rejected."
            if decided
            else "Nothing was decided."
        )
        if self.waiting:
            n = len(self.waiting)
            reasons = "; ".join(f"#{pid} {why}" for pid, why in sorted(self.waiting.items()))
            text += f" {n} wait{'s' if n == 1 else ''}: {reasons}."
        elif not decided:
            text += f" No proposal of the {self.cutoff} cut-off is in peer review."
        return text


class ReportRow(BaseModel):
    key: str
    #: How people read the key: a funding source's name, a country's name (else the key).
    label: str = ""
    allocations: int
    granted: Decimal
    used: Decimal
    reserved: Decimal
    remaining: Decimal


class FundingAmount(BaseModel):
    """Money of one funding source in the registry's funding lines (federation and factories).

    ``funds`` says what it pays for: ``gpu_hours`` (Digital Europe, national: the GPU-hours
    rows of the same ``source``) or ``services`` (Horizon Europe: never GPU-hours).
    """

    source: str
    label: str
    amount_eur: int
    funds: str


class Report(BaseModel):
    group_by: str
    start: date | None
    end: date | None
    rows: list[ReportRow]
    total: ReportRow
    #: Only by funding source: the € of each source beside the GPU-hours attributed to it.
    funding: list[FundingAmount] = []
