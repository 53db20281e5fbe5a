"""The broker's decisions for one pass, made in memory from what the pass read (no I/O).

Jobs are taken in a fair order across projects (``fair_order``). Each starts at the best-ranked
site whose pool has the GPUs free and whose next-in-line job it cannot delay (EASY,
``broker.backfill``); the first job that fits a site but finds no GPUs there becomes that pool's
next in line; a job no site could ever run fails; every other waits with a reason that stays the
same while nothing changes for it, so an unchanged backlog writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from itertools import chain, zip_longest
from typing import Any

from aifactory.broker import backfill
from aifactory.broker.placement import Decision, JobRequest, PlacementPolicy, SiteView
from aifactory.domain.jobs import JobState
from aifactory.services import jobs as job_service
from aifactory.services.candidates import Candidate


def fair_order(rows: Iterable[tuple[int, str]]) -> list[int]:
    """Job ids taking one job of each project in turn; projects and jobs oldest first."""
    queues: dict[str, list[int]] = {}
    for job_id, project in rows:
        queues.setdefault(project, []).append(job_id)
    rounds = zip_longest(*queues.values())
    return [job_id for job_id in chain.from_iterable(rounds) if job_id is not None]


@dataclass(frozen=True)
class Spec:
    """What placement needs of a job's spec (which never changes), read once per job."""

    request: JobRequest | None  # None: the spec no longer validates
    error: str = ""
    array_limit: int | None = None


@dataclass
class Pending:
    id: int
    project: str
    spec: Spec
    array_id: int | None
    reason: str
    cancel: bool


@dataclass
class Pool:
    """A pool of GPUs as this pass sees it: free now, and the predicted ends of its holders."""

    free: int
    running: list[tuple[float, int, int]]  # (predicted end, job id, GPUs), sorted
    reservation: backfill.Reservation | None = None
    head: int | None = None
    head_gpus: int = 0


@dataclass
class Plan:
    """What one pass decided, applied after the read transaction ends."""

    place: list[tuple[int, list[Candidate], dict[str, Any]]] = field(default_factory=list)
    end: list[tuple[int, JobState, str, dict[str, Any] | None]] = field(default_factory=list)
    notes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class Planner:
    """Decides one pass in memory: which jobs start where, which end, which wait and why."""

    def __init__(
        self,
        policy: PlacementPolicy,
        now: datetime,
        candidates: dict[str, list[Candidate]],
        pools: dict[str, Pool],
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

    def plan(self, jobs: Sequence[Pending]) -> Plan:
        out = Plan()
        for job in jobs:
            self._one(job, out)
        return out

    def _one(self, job: Pending, out: Plan) -> None:
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
        job: Pending,
        request: JobRequest,
        ready: list[Candidate],
        decision: Decision,
        out: Plan,
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
        job: Pending,
        request: JobRequest,
        sites: list[Candidate],
        decision: Decision,
        out: Plan,
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
                starts[best.view.name] = at(pool.reservation.start, self.now)
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
        self, job: Pending, reason: str, record: Callable[[], dict[str, Any]], out: Plan
    ) -> None:
        """A new reason is written with its decision; an unchanged one writes nothing."""
        if reason != job.reason:
            out.notes.append((job.id, reason, record()))


def _with(c: Candidate, free: int, budget: float | None) -> SiteView:
    return replace(c.view, free_gpus=max(free, 0), budget_remaining_gpu_hours=budget)


def at(ts: float, now: datetime) -> datetime:
    return datetime.fromtimestamp(max(ts, now.timestamp()), tz=now.tzinfo)
