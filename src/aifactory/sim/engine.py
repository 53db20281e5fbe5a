"""The discrete-event engine: deterministic, integer seconds, one heap, handlers by table.

Event conventions (the same as the pyss experiments the validation test compares against):

* An event is ``(time, kind, seq, payload)``. At equal times completions (kind 0) come before
  arrivals (kind 1); ``seq`` keeps insertion order among equals, so runs are deterministic.
* A finished job's units are free at its end time: a job ending at ``t`` releases them before
  anything arriving at ``t`` is considered.
* The site's scheduler runs after *every* event, as in pyss: when two jobs end at the same
  second, the scheduler sees the first release before the second one.
* Arrivals are fed lazily (one pending arrival in the heap at a time), so the heap holds at most
  the running jobs plus one event, even for million-job traces.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aifactory.errors import Invalid
from aifactory.sim.fastloop import FAST_POLICIES, run_fast
from aifactory.sim.machine import InvariantViolation, Machine
from aifactory.sim.model import Job, SiteSpec
from aifactory.sim.policies import LocalPolicy, make_policy

__all__ = ["ARRIVAL", "COMPLETION", "Router", "SimResult", "SiteRun", "simulate", "validate_jobs"]

COMPLETION = 0
ARRIVAL = 1

#: Routes an arriving job: returns the index of the chosen site, or a rejection reason.
Router = Callable[[Job, "Sequence[SiteRun]", int], "int | str"]
Progress = Callable[[int, int], None]


@dataclass(slots=True)
class SiteRun:
    """One site's state during a run, and its recorded time series."""

    spec: SiteSpec
    machine: Machine
    policy: LocalPolicy
    budget_left: float | None = None
    times: array[int] = field(default_factory=lambda: array("q"))
    busy: array[int] = field(default_factory=lambda: array("q"))
    queued: array[int] = field(default_factory=lambda: array("q"))

    def record(self, now: int) -> None:
        """Append (time, busy units, queue length); a later sample at the same time wins."""
        m = self.machine
        if self.times and self.times[-1] == now:
            self.busy[-1] = m.capacity - m.free
            self.queued[-1] = len(m.queue)
            return
        self.times.append(now)
        self.busy.append(m.capacity - m.free)
        self.queued.append(len(m.queue))


@dataclass(slots=True)
class SimResult:
    """Jobs with their results, per-site runs, and jobs no site would take."""

    jobs: list[Job]
    sites: list[SiteRun]
    rejected: dict[str, int] = field(default_factory=dict)


class _Engine:
    def __init__(
        self,
        jobs: list[Job],
        sites: list[SiteRun],
        router: Router | None,
        progress: Progress | None,
    ) -> None:
        self.jobs = jobs
        self.sites = sites
        self.router = router
        self.progress = progress
        self.heap: list[tuple[int, int, int, object]] = []
        self.seq = 0
        self.rejected: dict[str, int] = {}
        self.done = 0
        self.handlers: dict[int, Callable[[int, object], int]] = {
            COMPLETION: self._on_completion,
            ARRIVAL: self._on_arrival,
        }

    def _push(self, time: int, kind: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, kind, self.seq, payload))

    def _on_arrival(self, now: int, payload: object) -> int:
        index = payload if isinstance(payload, int) else 0
        job = self.jobs[index]
        if index + 1 < len(self.jobs):
            self._push(self.jobs[index + 1].submit, ARRIVAL, index + 1)
        target: int | str = 0 if self.router is None else self.router(job, self.sites, now)
        if isinstance(target, str):
            self.rejected[target] = self.rejected.get(target, 0) + 1
            return -1
        job.site = target
        site = self.sites[target]
        site.machine.enqueue(job)
        site.policy.on_arrival(site.machine, job, now)
        return target

    def _on_completion(self, now: int, payload: object) -> int:
        job = payload
        if not isinstance(job, Job):  # pragma: no cover - the engine only pushes jobs here
            raise InvariantViolation("completion event without a job")
        site = self.sites[job.site]
        site.machine.finish(job)
        site.policy.on_completion(site.machine, job, now)
        self.done += 1
        return job.site

    def _schedule(self, index: int, now: int) -> None:
        site = self.sites[index]
        for job in site.policy.schedule(site.machine, now):
            self._push(job.end, COMPLETION, job)
        site.record(now)

    def run(self) -> None:
        if self.jobs:
            self._push(self.jobs[0].submit, ARRIVAL, 0)
        heap, handlers, pop = self.heap, self.handlers, heapq.heappop
        report_every = 20_000
        count = 0
        while heap:
            now, kind, _, payload = pop(heap)
            index = handlers[kind](now, payload)
            if index >= 0:
                self._schedule(index, now)
            count += 1
            if self.progress is not None and count % report_every == 0:
                self.progress(self.done, len(self.jobs))
        if self.progress is not None:
            self.progress(self.done, len(self.jobs))


def make_sites(specs: Sequence[SiteSpec], default_policy: str) -> list[SiteRun]:
    """Fresh site state for each spec; a spec's own policy overrides the default."""
    return [
        SiteRun(
            spec,
            Machine(spec.capacity),
            make_policy(spec.policy or default_policy),
            spec.budget_gpu_hours,
        )
        for spec in specs
    ]


def validate_jobs(jobs: list[Job]) -> None:
    """Refuse jobs the schedulers cannot take (the trace readers never make them).

    Raises:
        Invalid: Naming the first job with width < 1, run time < 0 or beyond its requested
            time, or submitted before the job ahead of it.
    """
    last = -1
    for job in jobs:
        if job.width < 1 or job.run < 0 or job.run > job.req or job.submit < last:
            raise Invalid(
                f"job {job.id}: needs width >= 1, 0 <= run <= requested time, and jobs sorted "
                "by submit time"
            )
        last = job.submit


def simulate(
    jobs: list[Job],
    sites: list[SiteRun],
    *,
    router: Router | None = None,
    progress: Progress | None = None,
    check: bool = True,
    fast: bool = True,
) -> SimResult:
    """Replay jobs (sorted by submit time) through the sites.

    Args:
        jobs: Jobs in submit order; their result fields are overwritten.
        sites: Site state from :func:`make_sites`.
        router: Chooses a site per arriving job; ``None`` sends every job to site 0.
        progress: Called now and then with (jobs finished, jobs in all).
        check: Verify the run's invariants afterwards (cheap; see :mod:`aifactory.sim.checks`).
        fast: Use :mod:`aifactory.sim.fastloop` when it applies (one site, no router, FCFS or
            EASY); ``False`` forces the general engine (the fast path is tested against it).

    Raises:
        InvariantViolation: A scheduling invariant broke.
    """
    if fast and router is None and len(sites) == 1 and sites[0].policy.name in FAST_POLICIES:
        site = sites[0]  # run_fast checks the jobs and sets every result field
        times, busy, queued = run_fast(jobs, site.machine.capacity, site.policy.name, progress)
        site.times = array("q", times.astype("<i8").tobytes())
        site.busy = array("q", busy.astype("<i8").tobytes())
        site.queued = array("q", queued.astype("<i8").tobytes())
        result = SimResult(jobs, sites, {})
    else:
        validate_jobs(jobs)
        for job in jobs:
            job.start = job.end = job.site = -1
        engine = _Engine(jobs, sites, router, progress)
        engine.run()
        result = SimResult(jobs, sites, engine.rejected)
    if check:
        from aifactory.sim.checks import check_invariants

        check_invariants(result)
    return result
