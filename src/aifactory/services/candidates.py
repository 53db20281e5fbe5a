"""Where a project's jobs may run, with live GPUs and budget: one candidate per active partition
allocation, and one per admitting partition of a federation allocation (sharing its budget).

Read by submissions (``services.jobs``), the broker's passes (``agents.reconciler``, for all
projects with waiting jobs at once) and ``jobs why``. A candidate belongs to a pool of GPUs: its
partition, or its whole factory when the site's agent caps the factory's GPUs (local sites).

Where the site's scheduler estimates its pending jobs' starts (Slurm's ``squeue --start``,
recorded by the site agent in ``site_estimates``), a candidate carries the latest of those
starts: a job sent there now starts no earlier as that scheduler sees it, whatever the
federation's own count of free GPUs says (jobs from outside the federation hold GPUs too).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, func, or_, select
from sqlalchemy.orm import Session

from aifactory.broker.placement import JobRequest, SiteView
from aifactory.db.models import (
    Allocation,
    Factory,
    Job,
    Partition,
    Project,
    SiteEstimate,
    SiteStatus,
    System,
)
from aifactory.domain.clock import as_date
from aifactory.domain.entitlements import Scope
from aifactory.domain.jobs import ACTIVE
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.ledger import LedgerState
from aifactory.domain.registry import FactoryStatus
from aifactory.services import entitlements

#: Scheduler estimates older than this (seconds) are not used: the site agent stopped reading.
STALE_S = 180.0


@dataclass(frozen=True)
class Candidate:
    """A site view and the allocation/partition it stands for."""

    view: SiteView
    allocation_id: int
    partition_id: int
    factory_id: int
    charge_factor: float
    site_down: bool = False  # the site agent cannot reach the scheduler now (transient)
    held_gpu_hours: float = 0.0  # budget the project's placed and running jobs hold there
    pool: str = ""  # the GPUs it competes for: its partition, or its whole (capped) factory
    factory_name: str = ""
    partition_name: str = ""  # "system/partition", as job views show it


def pool_key(factory_id: int, partition_id: int, capped: bool) -> str:
    """A pool of GPUs: a partition, or a whole factory whose agent caps its GPUs."""
    return f"factory:{factory_id}" if capped else f"partition:{partition_id}"


def site_candidates(
    session: Session, project_code: str, now: datetime, capacity: Mapping[str, int | None]
) -> list[Candidate]:
    """One site view per active allocation of the project, with live capacity and budget."""
    return candidates_by_project(session, [project_code], now, capacity).get(project_code, [])


_COLUMNS = (
    Allocation.id.label("allocation_id"),
    Allocation.project_code,
    Allocation.granted_milli,
    Allocation.used_milli,
    Allocation.reserved_milli,
    Allocation.expired_milli,
    Partition.id.label("partition_id"),
    Partition.name.label("partition"),
    Partition.nodes,
    Partition.gpus_per_node,
    Partition.gpu_model,
    Partition.gpu_memory_gb,
    Partition.charge_factor,
    Partition.max_time_hours,
    System.name.label("system"),
    Factory.id.label("factory_id"),
    Factory.name.label("factory"),
    Factory.status,
    Factory.country_code,
    SiteStatus.available,
)


_SCOPE = (Allocation.scope, Project.mode)
_ACTIVE = (
    Allocation.project_code.in_(bindparam("projects", expanding=True)),
    Allocation.status == "active",
    Allocation.start_date <= bindparam("today"),
    Allocation.end_date >= bindparam("today"),
)
# A partition allocation is one row; a federation allocation (no partition) one row per
# partition of the federation, kept where the factory admits the project (``_admitted``).
# One statement, not a union of the two: submissions read this every time.
_CANDIDATES = (
    select(*_COLUMNS, *_SCOPE)
    .join(Project, Project.code == Allocation.project_code)
    .join(
        Partition,
        or_(Partition.id == Allocation.partition_id, Allocation.partition_id.is_(None)),
    )
    .join(System, System.id == Partition.system_id)
    .join(Factory, Factory.id == System.factory_id)
    .outerjoin(SiteStatus, SiteStatus.factory_id == Factory.id)
    .where(*_ACTIVE)
    .order_by(Allocation.id, Factory.name, System.name, Partition.name)
)
_BUSY = (
    select(Job.factory_id, Job.partition_id, func.sum(Job.gpus))
    .where(Job.state.in_(sorted(ACTIVE)))
    .group_by(Job.factory_id, Job.partition_id)
)
_BUSY_AT = _BUSY.where(Job.factory_id.in_(bindparam("factories", expanding=True)))


def candidates_by_project(
    session: Session, projects: Sequence[str], now: datetime, capacity: Mapping[str, int | None]
) -> dict[str, list[Candidate]]:
    """The candidates of several projects, read in two statements whatever their number
    (columns, not ORM objects, by statements built once: submissions read this every time)."""
    # Core, not the ORM's execute: these are columns, and the ORM's layer costs more here
    # than the database does.
    params = {"projects": list(projects), "today": as_date(now)}
    rows = _admitted(session.connection().execute(_CANDIDATES, params).all())
    factories = {r.factory_id: r.factory for r in rows}
    capped = {fid for fid, name in factories.items() if capacity.get(name) is not None}
    busy = busy_by_pool(session, capacity, (factories, capped)) if rows else {}
    starts = scheduler_starts(session, {r.partition_id for r in rows}, now) if rows else {}
    out: dict[str, list[Candidate]] = {}
    for row in rows:
        candidate = _candidate(row, busy, capacity.get(row.factory), starts)
        out.setdefault(row.project_code, []).append(candidate)
    return out


def _admitted(rows: Sequence[Any]) -> Sequence[Row[Any]]:
    """The rows of federation allocations at factories that admit the project (those that run
    its access mode), except on a partition where the project has an allocation of its own
    (that one is used there; a site has one candidate per project)."""
    federated = {r.mode for r in rows if r.scope == Scope.FEDERATION}
    if not federated:
        return rows
    admits = entitlements.admitting_factories(federated)
    own = {(r.project_code, r.partition_id) for r in rows if r.scope != Scope.FEDERATION}
    return [
        r
        for r in rows
        if r.scope != Scope.FEDERATION
        or (r.factory in admits[r.mode] and (r.project_code, r.partition_id) not in own)
    ]


_STARTS = select(SiteEstimate.partition_id, SiteEstimate.latest_start_at).where(
    SiteEstimate.partition_id.in_(bindparam("partitions", expanding=True)),
    SiteEstimate.updated_at >= bindparam("fresh"),
    SiteEstimate.pending_jobs > 0,
    SiteEstimate.latest_start_at.is_not(None),
)


def scheduler_starts(
    session: Session, partitions: Collection[int], now: datetime
) -> dict[int, float]:
    """The latest start (epoch seconds) the site's scheduler expects for the jobs pending on
    each partition, where it said so within :data:`STALE_S`."""
    params = {"partitions": sorted(partitions), "fresh": now - timedelta(seconds=STALE_S)}
    rows = session.connection().execute(_STARTS, params)
    return {partition: at.timestamp() for partition, at in rows if at is not None}


def _candidate(
    row: Row[Any], busy: Mapping[str, int], limit: int | None, starts: Mapping[int, float]
) -> Candidate:
    """One allocation's partition as placement sees it: hardware, free GPUs of its pool, budget."""
    pool = pool_key(row.factory_id, row.partition_id, limit is not None)
    total = row.nodes * row.gpus_per_node
    pool_total = min(total, limit) if limit is not None else total
    serving = row.status == FactoryStatus.OPERATIONAL
    down = row.available is False
    books = LedgerState(
        granted=row.granted_milli or 0,
        used=row.used_milli or 0,
        reserved=row.reserved_milli or 0,
        expired=row.expired_milli or 0,
    )
    view = SiteView(
        name=f"{row.factory}/{row.system}/{row.partition}",
        country=row.country_code,
        operational=serving and not down,
        gpu_model=row.gpu_model,
        gpu_memory_gb=row.gpu_memory_gb,
        gpus_per_node=row.gpus_per_node,
        nodes=row.nodes,
        free_gpus=max(pool_total - busy.get(pool, 0), 0),
        total_gpus=pool_total,
        queued_gpu_seconds=0.0,
        charge_factor=row.charge_factor,
        budget_remaining_gpu_hours=books.remaining / 1000,
        max_time_s=row.max_time_hours * 3600,
        est_start_s=starts.get(row.partition_id),
    )
    return Candidate(
        view,
        row.allocation_id,
        row.partition_id,
        row.factory_id,
        row.charge_factor,
        serving and down,
        books.reserved / 1000,
        pool,
        row.factory,
        f"{row.system}/{row.partition}",
    )


def busy_by_pool(
    session: Session,
    capacity: Mapping[str, int | None],
    only: tuple[Collection[int], set[int]] | None = None,
) -> dict[str, int]:
    """GPUs held by placed or running jobs, per pool (see ``pool_key``).

    ``only``: (factory ids, those of them whose GPUs are capped) to count at those factories
    alone, as a submission needs; by default every factory's.
    """
    if only is None:
        limited = [name for name, limit in capacity.items() if limit is not None]
        capped = set(session.scalars(select(Factory.id).where(Factory.name.in_(limited))))
        rows = session.connection().execute(_BUSY)
    else:
        capped = only[1]
        rows = session.connection().execute(_BUSY_AT, {"factories": list(only[0])})
    busy: dict[str, int] = {}
    for factory_id, partition_id, gpus in rows:
        if factory_id is None or partition_id is None:
            continue
        key = pool_key(factory_id, partition_id, factory_id in capped)
        busy[key] = busy.get(key, 0) + int(gpus or 0)
    return busy


def busy_gpus(session: Session, factory_id: int | None, partition_id: int) -> int:
    """GPUs held by placed or running jobs: the factory's pool (local) or the partition."""
    query = select(func.coalesce(func.sum(Job.gpus), 0)).where(Job.state.in_(list(ACTIVE)))
    if factory_id is not None:
        query = query.where(Job.factory_id == factory_id)
    else:
        query = query.where(Job.partition_id == partition_id)
    return int(session.scalar(query) or 0)


def job_request(spec: JobSpec) -> JobRequest:
    r = spec.resources
    return JobRequest(
        nodes=r.nodes,
        gpus_per_node=r.gpus_per_node,
        time_limit_s=float(r.time_limit),
        gpu_model=r.gpu_model,
        min_gpu_memory_gb=r.min_gpu_memory_gb,
        allowed_countries=frozenset(spec.allowed_countries) if spec.allowed_countries else None,
        prefer=tuple(spec.prefer_sites),
    )
