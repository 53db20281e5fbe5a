"""Admission: which waiting jobs start where now, which end, which wait and why. Pure, no I/O.

The live broker (``agents/planner.py``, called by each reconciler pass) and the simulator's
central mode (``sim/central.py``) call this same code with the same kind of input: the pending
jobs, the sites each project may use, the pools of GPUs with their free GPUs and the predicted
ends of the jobs holding them, and ``now`` as a float.

Jobs are taken in a fair order across projects (``fair_order``). Each starts at the best-ranked
site whose pool has the GPUs free and whose next-in-line job it cannot delay (EASY,
``broker.backfill``); the first job that fits a site but finds no GPUs there becomes that pool's
next in line; a job no site could ever run ends as failed; every other waits with a reason that
stays the same while nothing changes for it, so an unchanged backlog writes nothing.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import chain, zip_longest
from typing import Generic, Protocol, TypeVar

from aifactory.broker import backfill
from aifactory.broker.placement import Decision, JobRequest, PlacementPolicy, SiteView
from aifactory.domain.jobs import JobState

__all__ = [
    "Admission",
    "Candidate",
    "Decisions",
    "End",
    "Pending",
    "Place",
    "Pool",
    "Spec",
    "Wait",
    "fair_order",
    "gpu_wait",
    "waits_for",
]


class Candidate(Protocol):
    """A site a project may use: its view, and the allocation and pool it stands for
    (``services.candidates.Candidate`` live, ``sim.central.SimCandidate`` simulated)."""

    @property
    def view(self) -> SiteView: ...
    @property
    def allocation_id(self) -> int: ...
    @property
    def pool(self) -> str: ...
    @property
    def charge_factor(self) -> float: ...
    @property
    def site_down(self) -> bool: ...
    @property
    def held_gpu_hours(self) -> float: ...


C = TypeVar("C", bound=Candidate)


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
    """A job waiting for a place: its reason so far and whether its owner cancelled it."""

    id: int
    project: str
    spec: Spec
    array_id: int | None = None
    reason: str = ""
    cancel: bool = False


@dataclass
class Pool:
    """A pool of GPUs as this pass sees it: free now, and the predicted ends of its holders."""

    free: int
    running: list[tuple[float, int, int]]  # (predicted end, job id, GPUs), sorted
    reservation: backfill.Reservation | None = None
    head: int | None = None
    head_gpus: int = 0


@dataclass(frozen=True)
class Place(Generic[C]):
    """Start ``job`` at the first of ``ready`` that still has the budget (in that order)."""

    job: int
    ready: list[C]
    ranked: tuple[str, ...]
    rejected: Mapping[str, str]


@dataclass(frozen=True)
class End:
    """End ``job`` (cancelled, or failed: it can never run as asked); ``rejected`` is the
    placement to record with it, ``None`` for none."""

    job: int
    state: JobState
    reason: str
    rejected: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Wait:
    """``job`` waits with a new ``reason``; ``est_start``: site -> start (a float, like now)
    where it is next in line."""

    job: int
    reason: str
    ranked: tuple[str, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)
    est_start: Mapping[str, float] = field(default_factory=dict)


@dataclass
class Decisions(Generic[C]):
    """What one pass decided, in the order it decided it."""

    place: list[Place[C]] = field(default_factory=list)
    end: list[End] = field(default_factory=list)
    waits: list[Wait] = field(default_factory=list)


def gpu_wait(gpus: int, sites: Sequence[str], head: int | None = None) -> str:
    """Why a job waits for GPUs, in words that stay the same while it waits (no live counts:
    ``jobs why`` adds those), so a busy federation does not rewrite every waiting job."""
    where = ", ".join(sites)
    behind = f", behind job {head}, next in line there" if head is not None else ""
    return f"waiting for {gpus} GPUs at {where}{behind}"


def waits_for(
    policy: PlacementPolicy,
    request: JobRequest,
    candidates: Sequence[Candidate],
    rejected: Mapping[str, str],
    now: float,
) -> str | None:
    """Why a job no site takes now could still run later, or None when it never can.

    It can when a site would fit once its scheduler answers again, or once the budget that the
    project's own placed and running jobs hold comes back to the allocation.
    """
    hopeful = tuple(
        replace(
            c.view,
            operational=c.view.operational or c.site_down,
            budget_remaining_gpu_hours=(c.view.budget_remaining_gpu_hours or 0) + c.held_gpu_hours,
        )
        for c in candidates
    )
    later = policy.place(request, hopeful, now).ranked
    if not later:
        return None
    by_name = {c.view.name: c for c in candidates}
    reasons = [
        f"{name}: its scheduler does not answer now"
        if by_name[name].site_down
        else f"{name}: {rejected.get(name, 'busy')}, until the project's running jobs end"
        for name in later
    ]
    return "waiting for " + "; ".join(reasons)


class Admission(Generic[C]):
    """Decides one pass in memory: which jobs start where, which end, which wait and why.

    Args:
        policy: The placement policy ranking each job's sites.
        now: The pass's time (seconds, the same scale as the pools' predicted ends).
        candidates: Project -> the sites it may use.
        pools: Pool name -> its state; updated in place as jobs start (free GPUs, predicted
            ends, the reservation of the job next in line and that job).
        siblings: Array id -> tasks active now; updated as tasks start.
        until_full: Stop once no pool has a free GPU (the simulator: only starts matter there;
            the live broker decides every job, so each gets its reason).
    """

    def __init__(
        self,
        policy: PlacementPolicy,
        now: float,
        candidates: Mapping[str, Sequence[C]],
        pools: dict[str, Pool],
        siblings: dict[int, int],
        *,
        until_full: bool = False,
    ) -> None:
        self.policy, self.now = policy, now
        self.candidates, self.pools, self.siblings = candidates, pools, siblings
        self.until_full = until_full
        self.budget = {
            c.allocation_id: c.view.budget_remaining_gpu_hours
            for cs in candidates.values()
            for c in cs
        }
        self.version = 0  # bumped whenever a start changes free GPUs or budget
        self._memo: dict[tuple[str, JobRequest], tuple[int, Decision]] = {}

    def decide(self, jobs: Iterable[Pending]) -> Decisions[C]:
        """Decide the jobs in the order given (``fair_order`` for the broker's)."""
        out: Decisions[C] = Decisions()
        for job in jobs:
            if self.until_full and all(p.free <= 0 for p in self.pools.values()):
                break
            self._one(job, out)
        return out

    def _one(self, job: Pending, out: Decisions[C]) -> None:
        if job.cancel:
            out.end.append(End(job.id, JobState.CANCELLED, "cancelled while pending"))
            return
        request = job.spec.request
        if request is None:
            why = f"its spec is no longer valid: {job.spec.error}"
            out.end.append(End(job.id, JobState.FAILED, why))
            return
        limit = job.spec.array_limit
        if (
            job.array_id is not None
            and limit is not None
            and self.siblings.get(job.array_id, 0) >= limit
        ):
            why = f"array limit: at most {limit} of array {job.array_id}'s tasks run at a time"
            self._note(job, Wait(job.id, why), out)
            return
        cands = self.candidates.get(job.project, ())
        decision = self._decide(job.project, request, cands)
        by_name = {c.view.name: c for c in cands}
        ready = [by_name[n] for n in decision.ranked if self._may_start(by_name[n], request)]
        if ready:
            self._start(job, request, ready, decision, out)
        elif decision.ranked:
            self._wait_for_gpus(job, request, [by_name[n] for n in decision.ranked], decision, out)
        else:
            self._hopeless_or_later(job, request, cands, decision, out)

    def _hopeless_or_later(
        self,
        job: Pending,
        request: JobRequest,
        cands: Sequence[C],
        decision: Decision,
        out: Decisions[C],
    ) -> None:
        rejected = dict(decision.rejected)
        if not cands:
            rejected["(none)"] = f"project {job.project} has no active allocation"
        waiting = waits_for(self.policy, request, cands, rejected, self.now)
        if waiting is None:
            why = "no site can run this job: " + "; ".join(f"{k}: {v}" for k, v in rejected.items())
            out.end.append(End(job.id, JobState.FAILED, f"can never run as asked: {why}", rejected))
            return
        self._note(job, Wait(job.id, waiting, decision.ranked, rejected), out)

    def _decide(self, project: str, request: JobRequest, cands: Sequence[C]) -> Decision:
        """The policy's decision, shared by the project's jobs of one shape until GPUs or
        budget change within the pass."""
        key = (project, request)
        memo = self._memo.get(key)
        if memo is not None and memo[0] == self.version:
            return memo[1]
        views = tuple(
            _with(c.view, self.pools.get(c.pool), self.budget.get(c.allocation_id)) for c in cands
        )
        decision = self.policy.place(request, views, self.now)
        self._memo[key] = (self.version, decision)
        return decision

    def _may_start(self, cand: C, request: JobRequest) -> bool:
        pool = self.pools.get(cand.pool)
        if pool is None or pool.free < request.gpus:
            return False
        spare = backfill.allows(pool.reservation, self.now, request.time_limit_s, request.gpus)
        return spare is not None

    def _start(
        self,
        job: Pending,
        request: JobRequest,
        ready: list[C],
        decision: Decision,
        out: Decisions[C],
    ) -> None:
        first = ready[0]
        pool = self.pools[first.pool]
        spare = backfill.allows(pool.reservation, self.now, request.time_limit_s, request.gpus)
        if pool.reservation is not None and spare is not None:
            pool.reservation = backfill.Reservation(pool.reservation.start, spare)
        pool.free -= request.gpus
        # Its GPUs come back at its predicted end: a reservation made later in this pass
        # counts them (the next pass reads them from the running jobs).
        insort(pool.running, (self.now + request.time_limit_s, job.id, request.gpus))
        cost = request.gpus * request.time_limit_s / 3600 * first.charge_factor
        if self.budget.get(first.allocation_id) is not None:
            self.budget[first.allocation_id] = (self.budget[first.allocation_id] or 0) - cost
        if job.array_id is not None:
            self.siblings[job.array_id] = self.siblings.get(job.array_id, 0) + 1
        self.version += 1
        out.place.append(Place(job.id, ready, decision.ranked, decision.rejected))

    def _wait_for_gpus(
        self,
        job: Pending,
        request: JobRequest,
        sites: list[C],
        decision: Decision,
        out: Decisions[C],
    ) -> None:
        """It fits an entitled site but none has the GPUs (or the turn) now: the first such job
        of a pool is next in line there and gets its reservation; the others wait behind it."""
        best = sites[0]
        pool = self.pools.get(best.pool)
        starts: dict[str, float] = {}
        head = None
        if pool is not None and pool.reservation is None:
            try:
                pool.reservation = backfill.shadow(pool.free, pool.running, request.gpus)
            except ValueError:
                pool.reservation = None
            else:
                pool.head, pool.head_gpus = job.id, request.gpus
                starts[best.view.name] = pool.reservation.start
        if pool is not None and pool.head is not None and pool.head != job.id:
            head = pool.head
        names = tuple(c.view.name for c in sites)
        if pool is not None and pool.head == job.id:
            waiting = f"next in line for {request.gpus} GPUs at {best.view.name}"
        else:
            waiting = gpu_wait(request.gpus, names, head)
        self._note(job, Wait(job.id, waiting, names, decision.rejected, starts), out)

    @staticmethod
    def _note(job: Pending, wait: Wait, out: Decisions[C]) -> None:
        """A new reason is written with its decision; an unchanged one writes nothing."""
        if wait.reason != job.reason:
            out.waits.append(wait)


def _with(view: SiteView, pool: Pool | None, budget: float | None) -> SiteView:
    """The view as this pass sees it: free GPUs and the predicted ends of its pool's jobs
    (so a full site's start is estimated, not \"now\"), and the budget left."""
    if pool is None:
        return replace(view, free_gpus=0, budget_remaining_gpu_hours=budget)
    ends = tuple((end, gpus) for end, _, gpus in pool.running)
    return replace(
        view, free_gpus=max(pool.free, 0), budget_remaining_gpu_hours=budget, running_ends=ends
    )
