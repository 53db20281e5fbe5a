"""The queue state of each pool of GPUs, for start estimates (``jobs why``, placement views).

A candidate's view (``services.candidates``) carries the free GPUs of its pool; this module adds
what placement needs to say *when* a job would start there (``broker.placement.estimate_start``):

- the predicted ends of the jobs holding the pool (start, or placement while not started, plus
  time limit), the convention the broker's own reservations use (``agents.reconciler``);
- the GPU-seconds of the jobs waiting ahead of the job in the broker's queue for that pool
  (pending jobs whose best-ranked site is in the pool, older than the job);
- where the site's scheduler gives its own estimates (capability ``start_estimates``: Slurm's
  ``squeue --start``, recorded by the site agent in ``site_estimates``), that estimate.

It also writes those scheduler estimates for the site agent (:func:`save_estimates`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Job, Partition, SiteEstimate, System
from aifactory.domain.jobs import ACTIVE, JobState
from aifactory.executors.estimates import QueueEstimate
from aifactory.services.candidates import STALE_S, Candidate, pool_key

__all__ = [
    "AHEAD_LIMIT",
    "STALE_S",
    "PoolQueue",
    "save_estimates",
    "site_partitions",
    "with_queue_state",
]

#: Pending jobs read to measure the work ahead (the oldest first); a bound for a huge backlog.
AHEAD_LIMIT = 10_000


@dataclass(frozen=True)
class PoolQueue:
    """One pool's queue as the estimate needs it."""

    running_ends: tuple[tuple[float, int], ...] = ()
    queued_gpu_seconds: float = 0.0
    queued_jobs: int = 0


def with_queue_state(
    session: Session, cands: Sequence[Candidate], now: datetime, job: Job | None = None
) -> list[Candidate]:
    """The candidates with their pools' queue state and the schedulers' own estimates.

    Args:
        job: The job the estimates are for: only work ahead of it counts, and where it is
            queued at a scheduler that estimated its start, that estimate is its own.
    """
    if not cands:
        return []
    queues = pool_queues(session, cands, now, job)
    own = _own_start(session, now, job)
    out = []
    for c in cands:
        q = queues.get(c.pool, PoolQueue())
        view = replace(
            c.view,
            running_ends=q.running_ends,
            queued_gpu_seconds=q.queued_gpu_seconds,
            est_start_s=own[1] if own and own[0] == c.partition_id else c.view.est_start_s,
        )
        out.append(replace(c, view=view))
    return out


def pool_queues(
    session: Session, cands: Sequence[Candidate], now: datetime, job: Job | None = None
) -> dict[str, PoolQueue]:
    """Running ends and the work queued ahead, per pool of the candidates."""
    pools = {c.pool for c in cands}
    capped = {c.factory_id: c.pool for c in cands if c.pool.startswith("factory:")}
    ends: dict[str, list[tuple[float, int]]] = {p: [] for p in pools}
    rows = session.execute(
        select(
            Job.id, Job.factory_id, Job.partition_id, Job.gpus, Job.started_at, Job.updated_at,
            Job.time_limit_s,
        ).where(
            Job.state.in_(sorted(ACTIVE)),
            Job.gpus > 0,
            Job.factory_id.in_(sorted({c.factory_id for c in cands})),
        )
    )  # fmt: skip
    ts = now.timestamp()
    for job_id, factory_id, partition_id, gpus, started, since, limit in rows:
        if factory_id is None or partition_id is None:
            continue
        pool = capped.get(factory_id) or pool_key(factory_id, partition_id, False)
        if pool in ends and (job is None or job_id != job.id):
            start = (started or since or now).timestamp()  # not started: since it was placed
            ends[pool].append((max(start + limit, ts), int(gpus)))
    ahead = _waiting_ahead(session, cands, job)
    return {p: PoolQueue(tuple(sorted(ends[p])), *ahead.get(p, (0.0, 0))) for p in pools}


def _waiting_ahead(
    session: Session, cands: Sequence[Candidate], job: Job | None
) -> dict[str, tuple[float, int]]:
    """GPU-seconds and count of pending jobs ahead of ``job`` whose best site is in a pool."""
    by_name = {c.view.name: c.pool for c in cands}
    by_factory = {c.factory_name: c.pool for c in cands if c.pool.startswith("factory:")}
    query = select(Job.id, Job.gpus, Job.time_limit_s, Job.placement).where(
        Job.state == JobState.PENDING, Job.gpus > 0
    )
    if job is not None:
        query = query.where(Job.id < job.id)
    ahead: dict[str, tuple[float, int]] = {}
    for _, gpus, limit, placement in session.execute(query.order_by(Job.id).limit(AHEAD_LIMIT)):
        ranked = (placement or {}).get("ranked") or []
        if not ranked:
            continue
        site = str(ranked[0])
        pool = by_name.get(site) or by_factory.get(site.split("/", 1)[0])
        if pool is not None:
            work, count = ahead.get(pool, (0.0, 0))
            ahead[pool] = (work + float(gpus) * float(limit), count + 1)
    return ahead


def _own_start(session: Session, now: datetime, job: Job | None) -> tuple[int, float] | None:
    """Where ``job`` is queued at a scheduler that estimated its start (fresh): the partition
    and that estimate. The candidates carry the latest start of each partition's pending jobs
    already (``services.candidates``); a job queued there has its own."""
    if job is None or not job.backend_id or job.partition_id is None:
        return None
    row = session.get(SiteEstimate, job.partition_id)
    if row is None or row.updated_at < now - timedelta(seconds=STALE_S):
        return None
    own = (row.jobs or {}).get(job.backend_id)
    return None if own is None else (job.partition_id, float(own))


def site_partitions(session: Session, factory_id: int) -> dict[str, int]:
    """A factory's partitions: name (as its executor knows them) -> id."""
    rows = session.execute(
        select(Partition.name, Partition.id)
        .join(System, System.id == Partition.system_id)
        .where(System.factory_id == factory_id)
    )
    return {name: pid for name, pid in rows}


def save_estimates(
    session: Session,
    factory_id: int,
    partitions: Mapping[str, int],
    estimates: Mapping[str, QueueEstimate],
    now: datetime,
) -> None:
    """Replace the factory's recorded scheduler estimates with what it just said."""
    for name, partition_id in partitions.items():
        found = estimates.get(name, QueueEstimate())
        row = session.get(SiteEstimate, partition_id) or SiteEstimate(partition_id=partition_id)
        row.factory_id = factory_id
        row.pending_jobs = found.pending
        row.latest_start_at = (
            datetime.fromtimestamp(found.latest_start, tz=UTC)
            if found.latest_start is not None
            else None
        )
        row.jobs = dict(found.jobs)
        row.updated_at = now
        session.add(row)
