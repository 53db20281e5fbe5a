"""Workloads: jobs, their attempts and state history, and site availability."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # Submissions sum active jobs' GPUs per factory from this index alone (0010).
        Index("ix_jobs_busy", "factory_id", "state", "partition_id", "gpus"),
        Index("ix_jobs_project_id", "project_code", "id"),
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_allocation_id", "allocation_id"),
        Index("ix_jobs_array_id", "array_id", "state"),
        Index("ix_jobs_owner_id", "owner_id", "id"),
        Index("ix_jobs_partition_state", "partition_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random part of the key executors see: job ids restart with a new database, a cluster's
    # job history does not, so "job 1 of this control plane" must not match an old "job 1".
    uid: Mapped[str] = mapped_column(String(16), unique=True, default=lambda: uuid.uuid4().hex[:16])
    name: Mapped[str] = mapped_column(String(64))
    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    # Every write is a compare-and-set: UPDATE ... WHERE id = ? AND version = ?; a writer that
    # read an older version gets StaleDataError and its whole transaction rolls back.
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    __mapper_args__ = {"version_id_col": version}
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    gpus: Mapped[int] = mapped_column(Integer)
    time_limit_s: Mapped[int] = mapped_column(Integer)
    allocation_id: Mapped[int | None] = mapped_column(ForeignKey("allocations.id"))
    factory_id: Mapped[int | None] = mapped_column(ForeignKey("factories.id"))
    partition_id: Mapped[int | None] = mapped_column(ForeignKey("partitions.id"))
    reserved_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    charged_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    backend_id: Mapped[str | None] = mapped_column(String(128))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    placement: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job array is one submission of many task jobs: each task is a job of its own (placed,
    # charged and retried on its own); array_id is the id of the array's first task.
    array_id: Mapped[int | None] = mapped_column(Integer)
    array_task: Mapped[int | None] = mapped_column(Integer)
    # When the scheduler stopped reporting the job (state lost); cleared when it reappears.
    lost_since: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def exec_id(self) -> str:
        """The job's id as executors see it (with ``attempt`` it is their idempotency key)."""
        return f"{self.id}-{self.uid[:8]}"

    attempts: Mapped[list[JobAttempt]] = relationship(
        cascade="all, delete-orphan", order_by="JobAttempt.attempt", lazy="selectin"
    )


class JobAttempt(Base):
    """One try of a job at one site; a retried job has several."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), index=True)
    partition_id: Mapped[int] = mapped_column(ForeignKey("partitions.id"), index=True)
    backend_id: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    elapsed_s: Mapped[float] = mapped_column(Float, default=0.0)
    charged_milli: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    stdout_path: Mapped[str | None] = mapped_column(Text)
    stderr_path: Mapped[str | None] = mapped_column(Text)
    #: The attempt's working directory at the site, where a relative checkpoint_dir lives.
    workdir: Mapped[str | None] = mapped_column(Text)


class JobTransition(Base):
    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    from_state: Mapped[str] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")


class SiteStatus(Base):
    """Whether a factory's scheduler answers; written by its site agent."""

    __tablename__ = "site_status"

    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), primary_key=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The last time the site's scheduler answered its agent.
    last_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SiteQueue(Base):
    """The broker's reservation at one pool of GPUs (EASY backfilling): the pending job next in
    line there, and when it is expected to start by the time limits of the jobs holding the pool.

    A pool is a partition, or a whole factory whose agent caps its GPUs (``factory:<id>``). A
    submission may start at once in a pool with a reservation only if it ends before that
    start; anything else waits for the broker. Written only when the reservation changes.
    """

    __tablename__ = "site_queues"

    pool: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer)
    gpus: Mapped[int] = mapped_column(Integer)
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: GPUs free at ``start_at`` beyond what the reserved job needs.
    extra_gpus: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lease(Base):
    """Who may act for one controller scope (``site:<factory id>`` or ``broker``), and until when.

    ``token`` is the fencing token: it grows by one every time a new holder takes the lease, and
    every transaction an agent commits first checks that the lease still carries its token.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    token: Mapped[int] = mapped_column(BigInteger, default=1)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    renewed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ControllerBeat(Base):
    """A running controller process and when it last showed it was alive (for ``aif status``)."""

    __tablename__ = "controller_beats"

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    scope: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
