"""Where a project's jobs may run: one candidate per active allocation, with live GPUs and budget.

Read by submissions (``services.jobs``), the broker's passes (``agents.reconciler``, for all
projects with waiting jobs at once) and ``jobs why``. A candidate belongs to a pool of GPUs: its
partition, or its whole factory when the site's agent caps the factory's GPUs (local sites).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.broker.placement import JobRequest, SiteView
from aifactory.db.models import Allocation, Factory, Job, Partition, SiteStatus, System
from aifactory.domain.clock import as_date
from aifactory.domain.jobs import ACTIVE
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.ledger import LedgerState
from aifactory.domain.registry import FactoryStatus
from aifactory.services import ledger


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


def candidates_by_project(
    session: Session, projects: Sequence[str], now: datetime, capacity: Mapping[str, int | None]
) -> dict[str, list[Candidate]]:
    """The candidates of several projects, read in two statements whatever their number."""
    today = as_date(now)
    rows = session.execute(
        select(Allocation, Partition, System.name, Factory, SiteStatus.available)
        .join(Partition, Partition.id == Allocation.partition_id)
        .join(System, System.id == Partition.system_id)
        .join(Factory, Factory.id == Allocation.factory_id)
        .outerjoin(SiteStatus, SiteStatus.factory_id == Factory.id)
        .where(
            Allocation.project_code.in_(list(projects)),
            Allocation.status == "active",
            Allocation.start_date <= today,
            Allocation.end_date >= today,
        )
        .order_by(Allocation.id)
    ).all()
    down = {factory.id for *_, factory, available in rows if available is False}
    factories = {factory.id: factory.name for *_, factory, _ in rows}
    capped = {fid for fid, name in factories.items() if capacity.get(name) is not None}
    busy = busy_by_pool(session, capacity, (factories, capped)) if rows else {}
    out: dict[str, list[Candidate]] = {}
    for alloc, part, system_name, factory, _ in rows:
        books = ledger.state(session, alloc.id)
        site = (part, system_name, factory, capacity.get(factory.name))
        out.setdefault(alloc.project_code, []).append(_candidate(alloc.id, books, site, busy, down))
    return out


def _candidate(
    allocation_id: int,
    books: LedgerState,
    site: tuple[Partition, str, Factory, int | None],
    busy: Mapping[str, int],
    down: set[int],
) -> Candidate:
    """One allocation's partition as placement sees it: hardware, free GPUs of its pool, budget."""
    part, system_name, factory, limit = site
    pool = pool_key(factory.id, part.id, limit is not None)
    total = part.nodes * part.gpus_per_node
    pool_total = min(total, limit) if limit is not None else total
    serving = factory.status == FactoryStatus.OPERATIONAL
    view = SiteView(
        name=f"{factory.name}/{system_name}/{part.name}",
        country=factory.country_code,
        operational=serving and factory.id not in down,
        gpu_model=part.gpu_model,
        gpu_memory_gb=part.gpu_memory_gb,
        gpus_per_node=part.gpus_per_node,
        nodes=part.nodes,
        free_gpus=max(pool_total - busy.get(pool, 0), 0),
        total_gpus=pool_total,
        queued_gpu_seconds=0.0,
        charge_factor=part.charge_factor,
        budget_remaining_gpu_hours=books.remaining / 1000,
        max_time_s=part.max_time_hours * 3600,
    )
    site_down = serving and factory.id in down
    return Candidate(
        view,
        allocation_id,
        part.id,
        factory.id,
        part.charge_factor,
        site_down,
        books.reserved / 1000,
        pool,
        factory.name,
        f"{system_name}/{part.name}",
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
    query = (
        select(Job.factory_id, Job.partition_id, func.sum(Job.gpus))
        .where(Job.state.in_(list(ACTIVE)))
        .group_by(Job.factory_id, Job.partition_id)
    )
    if only is None:
        limited = [name for name, limit in capacity.items() if limit is not None]
        capped = set(session.scalars(select(Factory.id).where(Factory.name.in_(limited))))
    else:
        capped = only[1]
        query = query.where(Job.factory_id.in_(list(only[0])))
    rows = session.execute(query)
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
    )
