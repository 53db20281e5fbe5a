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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from itertools import chain, zip_longest
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from aifactory.agents.leases import LeaseLost
from aifactory.broker import backfill
from aifactory.broker.placement import (
    Decision,
    JobRequest,
    PlacementPolicy,
    SiteView,
    get_placement_policy,
)
from aifactory.db.engine import Database
from aifactory.db.models import Factory, Job, LedgerRow, Partition, SiteQueue, SiteStatus
from aifactory.db.types import utcnow
from aifactory.db.wake import site_topic, wake
from aifactory.domain.jobs import ACTIVE, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import jobs as job_service
from aifactory.services.jobs import Candidate

log = logging.getLogger(__name__)
Fence = Callable[[Session], None]
#: Seconds between passes that run even when nothing seems to have changed (the safety net).
FULL_PASS_S = 60.0
NOTE_BATCH = 500
#: A reservation's start is rewritten when it moves by more than this (seconds).
MOVED_S = 30.0


def fair_order(rows: Iterable[tuple[int, str]]) -> list[int]:
    """Job ids taking one job of each project in turn; projects and jobs oldest first."""
    queues: dict[str, list[int]] = {}
    for job_id, project in rows:
        queues.setdefault(project, []).append(job_id)
    rounds = zip_longest(*queues.values())
    return [job_id for job_id in chain.from_iterable(rounds) if job_id is not None]


@dataclass(frozen=True)
class _Spec:
    """What placement needs of a job's spec (which never changes), read once per job."""

    request: JobRequest | None  # None: the spec no longer validates
    error: str = ""
    array_limit: int | None = None


@dataclass
class _Pending:
    id: int
    project: str
    spec: _Spec
    array_id: int | None
    reason: str
    cancel: bool


@dataclass
class _Pool:
    """A pool of GPUs as this pass sees it: free now, and the predicted ends of its holders."""

    free: int
    running: list[tuple[float, int, int]]  # (predicted end, job id, GPUs), sorted
    reservation: backfill.Reservation | None = None
    head: int | None = None
    head_gpus: int = 0


@dataclass
class _Plan:
    """What one pass decided, applied after the read transaction ends."""

    place: list[tuple[int, list[Candidate], dict[str, Any]]] = field(default_factory=list)
    end: list[tuple[int, JobState, str, dict[str, Any] | None]] = field(default_factory=list)
    notes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class Backlog:
    """The broker's pending jobs between passes, and the passes over them (broker lease)."""

    def __init__(self, db: Database, capacity: Mapping[str, int | None], fence: Fence) -> None:
        self.db, self.capacity, self.fence = db, capacity, fence
        self.policy = get_placement_policy(job_service.POLICY)
        self._specs: dict[int, _Spec] = {}
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
                r[0]: _Pending(r[0], r[1], self._specs[r[0]], r[2], r[3], r[4]) for r in rows
            }
            self._specs = {i: self._specs[i] for i in pending}
            projects = sorted({p.project for p in pending.values()})
            candidates = job_service.candidates_by_project(s, projects, now, self.capacity)
            pools = _pools(s, candidates, now)
            siblings = _active_siblings(s, {p.array_id for p in pending.values()})
            queues = {q.pool: q for q in s.scalars(select(SiteQueue))}
        order = fair_order((p.id, p.project) for p in pending.values())
        plan = _Planner(self.policy, now, candidates, pools, siblings).plan(
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

    def _apply(self, plan: _Plan, now: datetime) -> int:
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
        self, old: Mapping[str, SiteQueue], pools: Mapping[str, _Pool], now: datetime
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
                row.start_at = _at(pool.reservation.start, now)
                row.extra_gpus, row.updated_at = pool.reservation.extra, now
                s.add(row)


class _Planner:
    """Decides one pass in memory: which jobs start where, which end, which wait and why."""

    def __init__(
        self,
        policy: PlacementPolicy,
        now: datetime,
        candidates: dict[str, list[Candidate]],
        pools: dict[str, _Pool],
        siblings: dict[int, int],
    ) -> None:
        self.policy, self.now, self.ts = policy, now, now.timestamp()
        self.candidates, self.pools, self.siblings = candidates, pools, siblings
        self.budget = {
            c.allocation_id: c.view.budget_remaining_gpu_hours
            for cs in candidates.values()
            for c in cs
        }
        self.version = 0  # bumped whenever a placement changes free GPUs or budget
        self._memo: dict[tuple[str, JobRequest], tuple[int, Decision]] = {}

    def plan(self, jobs: Sequence[_Pending]) -> _Plan:
        out = _Plan()
        for job in jobs:
            self._one(job, out)
        return out

    def _one(self, job: _Pending, out: _Plan) -> None:
        if job.cancel:
            out.end.append((job.id, JobState.CANCELLED, "cancelled while pending", None))
            return
        request = job.spec.request
        if request is None:
            out.end.append(
                (job.id, JobState.FAILED, f"its spec is no longer valid: {job.spec.error}", None)
            )
            return
        limit = job.spec.array_limit
        if (
            job.array_id is not None
            and limit is not None
            and self.siblings.get(job.array_id, 0) >= limit
        ):
            why = f"array limit: at most {limit} of array {job.array_id}'s tasks run at a time"
            self._note(job, why, partial(job_service.placement_record, self.now, waiting=why), out)
            return
        cands = self.candidates.get(job.project, [])
        decision = self._decide(job.project, request, cands)
        by_name = {c.view.name: c for c in cands}
        ready = [by_name[n] for n in decision.ranked if self._may_start(by_name[n], request)]
        if ready:
            self._start(job, request, ready, decision, out)
            return
        if decision.ranked:
            self._wait_for_gpus(job, request, [by_name[n] for n in decision.ranked], decision, out)
            return
        rejected = dict(decision.rejected)
        if not cands:
            rejected["(none)"] = f"project {job.project} has no active allocation"
        waiting = job_service.waits_for(self.policy, request, cands, rejected, self.now)
        if waiting is None:
            why = "no site can run this job: " + "; ".join(f"{k}: {v}" for k, v in rejected.items())
            last = job_service.placement_record(self.now, (), rejected)
            out.end.append((job.id, JobState.FAILED, f"can never run as asked: {why}", last))
            return
        record = partial(
            job_service.placement_record, self.now, decision.ranked, rejected, waiting=waiting
        )
        self._note(job, waiting, record, out)

    def _decide(self, project: str, request: JobRequest, cands: list[Candidate]) -> Decision:
        """The policy's decision, shared by the project's jobs of one shape until GPUs or
        budget change within the pass."""
        key = (project, request)
        memo = self._memo.get(key)
        if memo is not None and memo[0] == self.version:
            return memo[1]
        views = tuple(
            _with(
                c,
                self.pools[c.pool].free if c.pool in self.pools else 0,
                self.budget.get(c.allocation_id),
            )
            for c in cands
        )
        decision = self.policy.place(request, views, self.ts)
        self._memo[key] = (self.version, decision)
        return decision

    def _may_start(self, cand: Candidate, request: JobRequest) -> bool:
        pool = self.pools.get(cand.pool)
        if pool is None or pool.free < request.gpus:
            return False
        return (
            backfill.allows(pool.reservation, self.ts, request.time_limit_s, request.gpus)
            is not None
        )

    def _start(
        self,
        job: _Pending,
        request: JobRequest,
        ready: list[Candidate],
        decision: Decision,
        out: _Plan,
    ) -> None:
        first = ready[0]
        pool = self.pools[first.pool]
        spare = backfill.allows(pool.reservation, self.ts, request.time_limit_s, request.gpus)
        if pool.reservation is not None and spare is not None:
            pool.reservation = backfill.Reservation(pool.reservation.start, spare)
        pool.free -= request.gpus
        cost = request.gpus * request.time_limit_s / 3600 * first.charge_factor
        if self.budget.get(first.allocation_id) is not None:
            self.budget[first.allocation_id] = (self.budget[first.allocation_id] or 0) - cost
        if job.array_id is not None:
            self.siblings[job.array_id] = self.siblings.get(job.array_id, 0) + 1
        self.version += 1
        out.place.append(
            (
                job.id,
                ready,
                job_service.placement_record(self.now, decision.ranked, decision.rejected),
            )
        )

    def _wait_for_gpus(
        self,
        job: _Pending,
        request: JobRequest,
        sites: list[Candidate],
        decision: Decision,
        out: _Plan,
    ) -> None:
        """It fits an entitled site but none has the GPUs (or the turn) now: the first such job
        of a pool is next in line there and gets its reservation; the others wait behind it."""
        best = sites[0]
        pool = self.pools.get(best.pool)
        starts: dict[str, datetime] = {}
        head = None
        if pool is not None and pool.reservation is None:
            try:
                pool.reservation = backfill.shadow(pool.free, pool.running, request.gpus)
            except ValueError:
                pool.reservation = None
            else:
                pool.head, pool.head_gpus = job.id, request.gpus
                starts[best.view.name] = _at(pool.reservation.start, self.now)
        if pool is not None and pool.head is not None and pool.head != job.id:
            head = pool.head
        names = [c.view.name for c in sites]
        if pool is not None and pool.head == job.id:
            waiting = f"next in line for {request.gpus} GPUs at {best.view.name}"
        else:
            waiting = job_service.gpu_wait(request.gpus, names, head)
        record = partial(
            job_service.placement_record,
            self.now,
            names,
            decision.rejected,
            waiting=waiting,
            est_start=starts,
        )
        self._note(job, waiting, record, out)

    def _note(
        self, job: _Pending, reason: str, record: Callable[[], dict[str, Any]], out: _Plan
    ) -> None:
        """A new reason is written with its decision; an unchanged one writes nothing."""
        if reason != job.reason:
            out.notes.append((job.id, reason, record()))


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


def _read_spec(raw: Any) -> _Spec:
    try:
        spec = JobSpec.model_validate(raw)
    except ValidationError as exc:
        return _Spec(None, str(exc))
    return _Spec(job_service.job_request(spec), array_limit=spec.tasks()[1])


def _pools(
    s: Session, candidates: Mapping[str, list[Candidate]], now: datetime
) -> dict[str, _Pool]:
    """Each candidate pool's free GPUs and the predicted ends of the jobs holding it."""
    pools = {c.pool: _Pool(c.view.free_gpus, []) for cs in candidates.values() for c in cs}
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
        key = job_service.pool_key(factory_id, partition_id, factory_id in capped)
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


def _with(c: Candidate, free: int, budget: float | None) -> SiteView:
    return replace(c.view, free_gpus=max(free, 0), budget_remaining_gpu_hours=budget)


def _at(ts: float, now: datetime) -> datetime:
    return datetime.fromtimestamp(max(ts, now.timestamp()), tz=now.tzinfo)


def _moved(row: SiteQueue | None, pool: _Pool, now: datetime) -> bool:
    if row is None or pool.reservation is None:
        return True
    same = (row.job_id, row.gpus, row.extra_gpus) == (
        pool.head,
        pool.head_gpus,
        pool.reservation.extra,
    )
    start = _at(pool.reservation.start, now)
    return not same or abs((row.start_at - start).total_seconds()) > MOVED_S
