"""The broker's reconciler: gives every pending job a place, a reason to wait, or a failure.

Pending jobs are submissions that could not start at once, jobs waiting for a site or for
budget, and retried attempts. A pass takes them in a fair order across projects (one job of
each project in turn, oldest first) and applies EASY backfilling per pool of GPUs, the rule the
simulator uses (``broker/backfill.py``): the first job that cannot start in a pool gets a
reservation there (``site_queues``), and a later job starts now only if it cannot delay it. A
job that can never run as asked fails with the reason.

Work is done when something changes, not on every pass: a pass runs when the controller is
woken (a submission that waits, freed budget or GPUs, a site back, a cancel), when a cheap
fingerprint of what placement depends on has changed, and at the latest every ``FULL_PASS_S``.
A pass reads the backlog and the federation in a fixed number of statements (job specs are
read once per job and kept), decides in memory, and writes only what changed: placements
(each in its own fenced transaction, the budget reserved under the allocation's lock), ends,
reasons that changed, and reservations that moved. One broken job is logged and skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from aifactory.agents import planner
from aifactory.agents.leases import LeaseLost
from aifactory.broker.placement import get_placement_policy
from aifactory.db.engine import Database
from aifactory.db.models import Factory, Job, LedgerRow, Partition, SiteQueue, SiteStatus
from aifactory.db.types import utcnow
from aifactory.db.wake import site_topic, wake
from aifactory.domain.jobs import ACTIVE, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import jobs as job_service
from aifactory.services.candidates import Candidate, candidates_by_project, job_request, pool_key

log = logging.getLogger(__name__)
Fence = Callable[[Session], None]
#: Seconds between passes that run even when nothing seems to have changed (the safety net).
FULL_PASS_S = 60.0
NOTE_BATCH = 500
#: A reservation's start is rewritten when it moves by more than this (seconds).
MOVED_S = 30.0


class Backlog:
    """The broker's pending jobs between passes, and the passes over them (broker lease)."""

    def __init__(self, db: Database, capacity: Mapping[str, int | None], fence: Fence) -> None:
        self.db, self.capacity, self.fence = db, capacity, fence
        self.policy = get_placement_policy(job_service.POLICY)
        self._specs: dict[int, planner.Spec] = {}
        self._mark: tuple[object, ...] | None = None
        self._full_due = 0.0
        self.passes = 0

    def run(self, full: bool = False) -> int:
        """A pass if ``full`` (woken), if the fingerprint changed, or if the safety net is due;
        returns how many jobs were placed."""
        mark = self._fingerprint()
        if not full and mark == self._mark and time.monotonic() < self._full_due:
            return 0
        placed = self._pass()
        self._mark = mark  # read before the pass: what changed during it triggers the next
        self._full_due = time.monotonic() + FULL_PASS_S
        return placed

    def _fingerprint(self) -> tuple[object, ...]:
        """What placement depends on besides wake-ups, in four cheap statements."""
        with self.db.session() as s:
            pending = s.execute(
                select(func.count(), func.max(Job.id)).where(Job.state == JobState.PENDING)
            ).one()
            ledger = s.scalar(select(func.max(LedgerRow.id)))
            sites = s.execute(
                select(Factory.id, Factory.status, SiteStatus.available)
                .outerjoin(SiteStatus, SiteStatus.factory_id == Factory.id)
                .order_by(Factory.id)
            ).all()
            parts = s.execute(
                select(Partition.id, Partition.nodes, Partition.gpus_per_node).order_by(
                    Partition.id
                )
            ).all()
        return (utcnow().date(), tuple(pending), ledger, tuple(map(tuple, sites)), tuple(parts))

    # --- one pass ---

    def _pass(self) -> int:
        self.passes += 1
        now = utcnow()
        with self.db.session() as s:
            rows = s.execute(
                select(Job.id, Job.project_code, Job.array_id, Job.reason, Job.cancel_requested)
                .where(Job.state == JobState.PENDING)
                .order_by(Job.id)
            ).all()
            self._learn(s, [r[0] for r in rows if r[0] not in self._specs])
            pending = {
                r[0]: planner.Pending(r[0], r[1], self._specs[r[0]], r[2], r[3], r[4]) for r in rows
            }
            self._specs = {i: self._specs[i] for i in pending}
            projects = sorted({p.project for p in pending.values()})
            candidates = candidates_by_project(s, projects, now, self.capacity)
            pools = _pools(s, candidates, now)
            siblings = _active_siblings(s, {p.array_id for p in pending.values()})
            queues = {q.pool: q for q in s.scalars(select(SiteQueue))}
        order = planner.fair_order((p.id, p.project) for p in pending.values())
        plan = planner.Planner(self.policy, now, candidates, pools, siblings).plan(
            [pending[i] for i in order]
        )
        placed = self._apply(plan, now)
        self._save_queues(queues, pools, now)
        return placed

    def _learn(self, s: Session, ids: Sequence[int]) -> None:
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            for job_id, raw in s.execute(select(Job.id, Job.spec).where(Job.id.in_(part))):
                self._specs[job_id] = _read_spec(raw)

    def _apply(self, plan: planner.Plan, now: datetime) -> int:
        placed = 0
        for job_id, ranked, record in plan.place:
            placed += self._one(job_id, partial(_place, ranked=ranked, record=record, now=now))
        for job_id, state, reason, last in plan.end:
            self._one(job_id, partial(_end, state=state, reason=reason, record=last, now=now))
        for chunk in range(0, len(plan.notes), NOTE_BATCH):
            self._note(plan.notes[chunk : chunk + NOTE_BATCH])
        return placed

    def _one(self, job_id: int, act: Callable[[Session, Job], bool | None]) -> int:
        """Act on one pending job in its own fenced transaction; errors stay with the job."""
        try:
            with self.db.session() as s:
                self.fence(s)
                job = s.get(Job, job_id)
                if job is None or job.state != JobState.PENDING:
                    return 0
                if job.cancel_requested:
                    job_service.move(
                        s, job, JobState.CANCELLED, "cancelled while pending", utcnow()
                    )
                    return 0
                return int(bool(act(s, job)))
        except LeaseLost:
            raise
        except (StaleDataError, IntegrityError):
            return 0  # changed meanwhile (cancelled, placed by another pass): the next pass sees it
        except Exception:
            log.exception("pending job %s could not be examined; the others go on", job_id)
            return 0

    def _note(self, notes: list[tuple[int, str, dict[str, Any]]]) -> None:
        """New reasons of waiting jobs, many in one statement (not a state change: no version)."""
        jobs = Job.__table__
        assert isinstance(jobs, Table)
        statement = (
            jobs.update()
            .where(jobs.c.id == bindparam("job"), jobs.c.state == JobState.PENDING)
            .values(reason=bindparam("why"), placement=bindparam("record"))
        )
        with self.db.session() as s:
            self.fence(s)
            s.execute(statement, [{"job": i, "why": r, "record": p} for i, r, p in notes])

    def _save_queues(
        self, old: Mapping[str, SiteQueue], pools: Mapping[str, planner.Pool], now: datetime
    ) -> None:
        """Reservations that moved, appeared or went, in one transaction (none when none did)."""
        new = {k: p for k, p in pools.items() if p.reservation is not None and p.head is not None}
        gone = [k for k in old if k not in new]
        changed = [k for k, p in new.items() if _moved(old.get(k), p, now)]
        if not gone and not changed:
            return
        with self.db.session() as s:
            self.fence(s)
            if gone:
                s.execute(delete(SiteQueue).where(SiteQueue.pool.in_(gone)))
            for key in changed:
                pool = new[key]
                assert pool.reservation is not None and pool.head is not None
                row = s.get(SiteQueue, key) or SiteQueue(pool=key)
                row.job_id, row.gpus = pool.head, pool.head_gpus
                row.start_at = planner.at(pool.reservation.start, now)
                row.extra_gpus, row.updated_at = pool.reservation.extra, now
                s.add(row)


def _place(
    s: Session, job: Job, *, ranked: list[Candidate], record: dict[str, Any], now: datetime
) -> bool:
    """Reserve the budget at the first ready site that still has it, and place the job there."""
    rejected = dict(record.get("rejected", {}))
    for cand in ranked:
        short = job_service.try_reserve(s, job, cand, now)
        if short is None:
            job.placement = {
                **record,
                "chosen": cand.view.name,
                "rejected": rejected,
                "est_start_s": {cand.view.name: 0.0},
            }
            wake(s, site_topic(cand.factory_id))
            return True
        rejected[cand.view.name] = short  # the budget went since the pass read it
    return False


def _end(
    s: Session,
    job: Job,
    *,
    state: JobState,
    reason: str,
    record: dict[str, Any] | None,
    now: datetime,
) -> bool:
    if record is not None:
        job.placement = record
    job_service.move(s, job, state, reason, now)
    return False


def _read_spec(raw: Any) -> planner.Spec:
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        return planner.Spec(None, str(exc))
    return planner.Spec(job_request(spec), array_limit=spec.tasks()[1])


def _pools(
    s: Session, candidates: Mapping[str, list[Candidate]], now: datetime
) -> dict[str, planner.Pool]:
    """Each candidate pool's free GPUs and the predicted ends of the jobs holding it."""
    pools = {c.pool: planner.Pool(c.view.free_gpus, []) for cs in candidates.values() for c in cs}
    if not pools:
        return pools
    keys = {c.pool: c for cs in candidates.values() for c in cs}
    capped = {c.factory_id for c in keys.values() if c.pool.startswith("factory:")}
    rows = s.execute(
        select(
            Job.id,
            Job.factory_id,
            Job.partition_id,
            Job.gpus,
            Job.started_at,
            Job.updated_at,
            Job.time_limit_s,
        ).where(Job.state.in_(list(ACTIVE)), Job.gpus > 0)
    )
    ts = now.timestamp()
    for job_id, factory_id, partition_id, gpus, started, since, limit in rows:
        if factory_id is None or partition_id is None:
            continue
        key = pool_key(factory_id, partition_id, factory_id in capped)
        if key in pools:
            start = (started or since or now).timestamp()  # not started: since it was placed
            pools[key].running.append((max(start + limit, ts), job_id, gpus))
    for pool in pools.values():
        pool.running.sort()
    return pools


def _active_siblings(s: Session, arrays: set[int | None]) -> dict[int, int]:
    ids = sorted(a for a in arrays if a is not None)
    if not ids:
        return {}
    rows = s.execute(
        select(Job.array_id, func.count())
        .where(Job.array_id.in_(ids), Job.state.in_(list(ACTIVE)))
        .group_by(Job.array_id)
    )
    return {a: int(n) for a, n in rows if a is not None}


def _moved(row: SiteQueue | None, pool: planner.Pool, now: datetime) -> bool:
    if row is None or pool.reservation is None:
        return True
    same = (row.job_id, row.gpus, row.extra_gpus) == (
        pool.head,
        pool.head_gpus,
        pool.reservation.extra,
    )
    start = planner.at(pool.reservation.start, now)
    return not same or abs((row.start_at - start).total_seconds()) > MOVED_S
