"""Access to compute: proposals and their history, reviews, projects, allocations, ledger."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow

Share = Numeric(6, 5, asdecimal=True)


class Proposal(Base):
    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)
    mode: Mapped[str] = mapped_column(String(2))
    factory_id: Mapped[int | None] = mapped_column(ForeignKey("factories.id"), index=True)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("partitions.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    applicant_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    research_kind: Mapped[str] = mapped_column(String(16))
    gpu_hours_milli: Mapped[int | None] = mapped_column(BigInteger)
    duration_months: Mapped[int | None] = mapped_column(Integer)
    start_date: Mapped[date | None] = mapped_column(Date)
    pi_contract_end: Mapped[date | None] = mapped_column(Date)
    hosting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(32), index=True)
    eligibility: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cutoff: Mapped[date | None] = mapped_column(Date)
    period_no: Mapped[int | None] = mapped_column(Integer)
    deadline: Mapped[date | None] = mapped_column(Date)
    assessed_gpu_hours_milli: Mapped[int | None] = mapped_column(BigInteger)
    assessed_partition_id: Mapped[int | None] = mapped_column(
        ForeignKey("partitions.id"), index=True
    )
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    project_code: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Team, technical plan, data plan and ethics (domain.proposal_sections.Sections as JSON).
    sections: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    resources: Mapped[list[ProposalResource]] = relationship(
        cascade="all, delete-orphan", order_by="ProposalResource.position", lazy="selectin"
    )
    attachments: Mapped[list[ProposalAttachment]] = relationship(
        cascade="all, delete-orphan", order_by="ProposalAttachment.id", lazy="selectin"
    )
    transitions: Mapped[list[ProposalTransition]] = relationship(
        cascade="all, delete-orphan", order_by="ProposalTransition.id", lazy="selectin"
    )
    reviews: Mapped[list[ReviewAssignment]] = relationship(
        cascade="all, delete-orphan", order_by="ReviewAssignment.id", lazy="selectin"
    )


class ProposalResource(Base):
    """GPU-hours asked for on one partition (none: a federation allocation); the rows an
    award turns into allocations."""

    __tablename__ = "proposal_resources"
    __table_args__ = (UniqueConstraint("proposal_id", "position", name="proposal_resource_pos"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("partitions.id"), index=True)
    gpu_hours_milli: Mapped[int] = mapped_column(BigInteger)
    justification: Mapped[str] = mapped_column(Text, default="")


class ProposalAttachment(Base):
    """A PDF attached to a proposal; the bytes live under the data dir by their sha256."""

    __tablename__ = "proposal_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uploader_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProposalTransition(Base):
    """Every status change: who, when, from, to, why."""

    __tablename__ = "proposal_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    from_status: Mapped[str] = mapped_column(String(32))
    to_status: Mapped[str] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")


class ReviewAssignment(Base):
    __tablename__ = "review_assignments"
    __table_args__ = (UniqueConstraint("proposal_id", "reviewer_id", name="proposal_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    scores: Mapped[dict[str, str] | None] = mapped_column(JSON)
    comment: Mapped[str] = mapped_column(Text, default="")
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Project(Base):
    __tablename__ = "projects"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id"), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    mode: Mapped[str] = mapped_column(String(2))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    factory_id: Mapped[int | None] = mapped_column(ForeignKey("factories.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    members: Mapped[list[ProjectMember]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="ProjectMember.user_id"
    )


class ProjectMember(Base):
    __tablename__ = "project_members"

    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    role: Mapped[str] = mapped_column(String(32))


class Allocation(Base):
    """GPU-hours for one project on one partition, or (scope ``federation``) normalised
    GPU-hours usable at every factory that admits the project, with no factory or partition of
    its own (``domain.entitlements``); the ledger holds its balance."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"), index=True)
    scope: Mapped[str] = mapped_column(String(16), default="partition", server_default="partition")
    factory_id: Mapped[int | None] = mapped_column(ForeignKey("factories.id"), index=True)
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("partitions.id"), index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    eu_share: Mapped[Decimal] = mapped_column(Share)
    national_share: Mapped[Decimal] = mapped_column(Share)
    commercial_share: Mapped[Decimal] = mapped_column(Share)
    status: Mapped[str] = mapped_column(String(16), default="active")
    usage_level: Mapped[str] = mapped_column(String(16), default="ok")
    # Running totals of the ledger (milli-GPU-hours), updated with every entry under the row
    # lock, so a balance is one row read however long the history; the entries stay the truth
    # (services.ledger.recompute and the tests check that the two agree).
    granted_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    used_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    expired_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LedgerRow(Base):
    """Append-only: rows are inserted, never updated or deleted. Amounts in milli-GPU-hours.

    A job's entries carry its id and attempt; the unique (job, attempt, kind) makes every
    reserve, release and charge of one attempt happen at most once, whoever tries twice.
    """

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("job_id", "attempt", "kind", name="uq_ledger_job_effect"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    amount_milli: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    job_ref: Mapped[str | None] = mapped_column(String(64), index=True)
    job_id: Mapped[int | None] = mapped_column(Integer)
    attempt: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text, default="")


class LedgerDay(Base):
    """The ledger summed per allocation, UTC day and kind: what a dated usage report reads.

    Kept exact by database triggers on ``ledger_entries`` (migration 0009), never by Python:
    every insert (also a bulk ``COPY``), update and delete of an entry adds its difference in
    the same transaction, so the two cannot drift whoever writes. ``entries`` counts the rows
    summed (the audit compares both with the entries themselves).
    """

    __tablename__ = "ledger_days"

    allocation_id: Mapped[int] = mapped_column(ForeignKey("allocations.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    amount_milli: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[int] = mapped_column(Integer)


class Event(Base):
    """Notable things users should hear about (budget warnings, hard stops, expiries)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    kind: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
