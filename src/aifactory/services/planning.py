"""What capacity planning reads from the control plane: a snapshot of the registry (factories,
their funding shares, systems and partitions) and the federation's own job history.

The snapshot is the document ``aif plan`` starts from (``aif plan snapshot`` writes it to a
file, ``aif plan --registry FILE`` reads it back); :mod:`aifactory.sim.plan` reads it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Factory, Job, Partition, System
from aifactory.domain.enums import Role
from aifactory.errors import Forbidden, Invalid
from aifactory.services import registry
from aifactory.services.permissions import Principal
from aifactory.services.views import View

__all__ = [
    "HISTORY_LIMIT",
    "HistoryJob",
    "JobHistory",
    "PlanningSnapshot",
    "history",
    "is_staff",
    "snapshot",
]

SNAPSHOT_VERSION = 1
#: The most jobs one history answer holds (the newest are kept).
HISTORY_LIMIT = 200_000


class SplitShares(View):
    eu: float
    national: float
    commercial: float


class SnapshotPartition(View):
    name: str
    gpu_model: str
    nodes: int
    gpus_per_node: int
    gpu_memory_gb: float
    charge_factor: float


class SnapshotSystem(View):
    name: str
    partitions: list[SnapshotPartition]


class SnapshotFactory(View):
    name: str
    country: str
    status: str
    capacity_split: SplitShares
    systems: list[SnapshotSystem]


class PlanningSnapshot(View):
    """The registry as planning needs it; also the layout ``aif sim run --sites`` reads."""

    snapshot: int = SNAPSHOT_VERSION
    taken_at: datetime
    factories: list[SnapshotFactory]


class HistoryJob(View):
    """One job that ran: when it was submitted, started and ended, on what, for whom."""

    id: int
    project: str
    factory: str
    partition: str
    gpus: int
    time_limit_s: int
    submitted_at: datetime
    started_at: datetime
    ended_at: datetime


class JobHistory(View):
    since: date | None
    truncated: bool
    jobs: list[HistoryJob]


def snapshot(session: Session, now: datetime) -> PlanningSnapshot:
    """Every factory with its status, funding shares, systems and partitions."""
    factories = [
        SnapshotFactory(
            name=f.name,
            country=f.country,
            status=f.status,
            capacity_split=SplitShares.model_validate(f.capacity_split.model_dump()),
            systems=[
                SnapshotSystem(
                    name=s.name,
                    partitions=[
                        SnapshotPartition.model_validate(p.model_dump()) for p in s.partitions
                    ],
                )
                for s in f.systems
            ],
        )
        for f in registry.list_factories(session)
    ]
    return PlanningSnapshot(taken_at=now, factories=factories)


def is_staff(who: Principal) -> bool:
    """Federation admins and factory operators: those who plan the federation's capacity."""
    return who.is_admin or who.has(Role.FACTORY_OPERATOR)


def history(
    session: Session, who: Principal, since: date | None = None, limit: int = HISTORY_LIMIT
) -> JobHistory:
    """Jobs that started and ended (since ``since``), oldest first, at most ``limit``.

    Raises:
        Forbidden: The caller is neither a federation admin nor a factory operator.
        Invalid: ``limit`` outside 1..HISTORY_LIMIT.
    """
    if not is_staff(who):
        raise Forbidden("job history for planning is for federation admins and factory operators")
    if not 1 <= limit <= HISTORY_LIMIT:
        raise Invalid.field("limit", "range", f"limit must be between 1 and {HISTORY_LIMIT}")
    query = (
        select(Job, Factory.name, System.name, Partition.name)
        .join(Partition, Partition.id == Job.partition_id)
        .join(System, System.id == Partition.system_id)
        .join(Factory, Factory.id == System.factory_id)
        .where(Job.started_at.is_not(None), Job.ended_at.is_not(None))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(limit + 1)
    )
    if since is not None:
        query = query.where(Job.created_at >= datetime.combine(since, time(), UTC))
    rows = session.execute(query).all()
    jobs = [
        HistoryJob(
            id=job.id,
            project=job.project_code,
            factory=factory,
            partition=f"{factory}/{system}/{partition}",
            gpus=job.gpus,
            time_limit_s=job.time_limit_s,
            submitted_at=job.created_at,
            started_at=job.started_at,
            ended_at=job.ended_at,
        )
        for job, factory, system, partition in rows[:limit]
    ]
    jobs.reverse()
    return JobHistory(since=since, truncated=len(rows) > limit, jobs=jobs)
