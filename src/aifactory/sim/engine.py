"""The discrete-event engine: deterministic, integer seconds, one heap, handlers by table.

Event conventions (``events`` and ``schedule`` choose them; the defaults are the first of each):

* An event is ``(time, kind, seq, payload)``. At equal times completions come before arrivals
  (``completions-first``, the default) or arrivals before completions (``arrivals-first``, as
  in pyss); ``seq`` keeps insertion order among equals, so runs are deterministic.
* A finished job's units are free at its end time: with completions first, a job ending at
  ``t`` releases them before anything arriving at ``t`` is considered.
* The site's scheduler runs after *every* event (``schedule="event"``, the default, as pyss
  does), or once after the last event of each timestamp (``schedule="timestamp"``).
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

__all__ = [
    "ARRIVAL",
    "COMPLETION",
    "EVENT_ORDERS",
    "SCHEDULE_POINTS",
    "Router",
    "SimResult",
    "SiteRun",
    "event_order",
    "simulate",
    "validate_jobs",
]

COMPLETION = 0
ARRIVAL = 1
#: Which events come first at equal times: the heap kinds of (completion, arrival).
EVENT_ORDERS: dict[str, tuple[int, int]] = {
    "completions-first": (COMPLETION, ARRIVAL),
    "arrivals-first": (ARRIVAL, COMPLETION),
}
#: When the scheduler runs: after every event, or once after the last event of a timestamp.
SCHEDULE_POINTS = ("event", "timestamp")
DEFAULT_EVENTS, DEFAULT_SCHEDULE = "completions-first", "event"


def event_order(events: str, schedule: str) -> tuple[int, int]:
    """The heap kinds of (completion, arrival) for ``events``, after checking both options.

    Raises:
        Invalid: Unknown event order or scheduling point, naming the option.
    """
    if events not in EVENT_ORDERS:
        valid = ", ".join(EVENT_ORDERS)
        raise Invalid.field("events", "unknown", f"unknown event order {events!r}; valid: {valid}")
    if schedule not in SCHEDULE_POINTS:
        valid = ", ".join(SCHEDULE_POINTS)
        raise Invalid.field(
            "schedule", "unknown", f"unknown scheduling point {schedule!r}; valid: {valid}"
        )
    return EVENT_ORDERS[events]


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
    # Central admission only: (time, jobs waiting centrally) after every change.
    queue_times: array[int] = field(default_factory=lambda: array("q"))
    queue_len: array[int] = field(default_factory=lambda: array("q"))


class _Engine:
    def __init__(
        self,
        jobs: list[Job],
        sites: list[SiteRun],
        router: Router | None,
        progress: Progress | None,
        events: str = DEFAULT_EVENTS,
        schedule: str = DEFAULT_SCHEDULE,
    ) -> None:
        self.completion, self.arrival = event_order(events, schedule)
        self.per_event = schedule == "event"
        self.jobs = jobs
        self.sites = sites
        self.router = router
        self.progress = progress
        self.heap: list[tuple[int, int, int, object]] = []
        self.seq = 0
        self.rejected: dict[str, int] = {}
        self.done = 0
        self.handlers: dict[int, Callable[[int, object], int]] = {
            self.completion: self._on_completion,
            self.arrival: self._on_arrival,
        }

    def _push(self, time: int, kind: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, kind, self.seq, payload))

    def _on_arrival(self, now: int, payload: object) -> int:
        index = payload if isinstance(payload, int) else 0
        job = self.jobs[index]
        if index + 1 < len(self.jobs):
            self._push(self.jobs[index + 1].submit, self.arrival, index + 1)
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
        if site.budget_left is not None:  # reserved at placement: charge the hours used
            site.budget_left += job.width * (job.req - job.run) / 3600.0 * site.spec.charge_factor
        site.policy.on_completion(site.machine, job, now)
        self.done += 1
        return job.site

    def _schedule(self, index: int, now: int) -> None:
        site = self.sites[index]
        for job in site.policy.schedule(site.machine, now):
            self._push(job.end, self.completion, job)
        site.record(now)

    def run(self) -> None:
        if self.jobs:
            self._push(self.jobs[0].submit, self.arrival, 0)
        heap, handlers, pop = self.heap, self.handlers, heapq.heappop
        report_every = 20_000
        count = 0
        touched: set[int] = set()  # sites to schedule once this timestamp's events are in
        while heap:
            now, kind, _, payload = pop(heap)
            index = handlers[kind](now, payload)
            if self.per_event:
                if index >= 0:
                    self._schedule(index, now)
            else:
                if index >= 0:
                    touched.add(index)
                if not heap or heap[0][0] != now:
                    for site in sorted(touched):
                        self._schedule(site, now)
                    touched.clear()
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
    events: str = DEFAULT_EVENTS,
    schedule: str = DEFAULT_SCHEDULE,
) -> SimResult:
    """Replay jobs (sorted by submit time) through the sites.

    Args:
        jobs: Jobs in submit order; their result fields are overwritten.
        sites: Site state from :func:`make_sites`.
        router: Chooses a site per arriving job; ``None`` sends every job to site 0.
        progress: Called now and then with (jobs finished, jobs in all).
        check: Verify the run's invariants afterwards (cheap; see :mod:`aifactory.sim.checks`).
        fast: Use :mod:`aifactory.sim.fastloop` when it applies (one site, no router, FCFS or
            EASY, the default event conventions); ``False`` forces the general engine (the fast
            path is tested against it).
        events: ``completions-first`` or ``arrivals-first`` at equal times.
        schedule: ``event`` (the scheduler runs after every event) or ``timestamp``.

    Raises:
        InvariantViolation: A scheduling invariant broke.
        Invalid: An unknown event order or scheduling point.
    """
    event_order(events, schedule)
    defaults = (events, schedule) == (DEFAULT_EVENTS, DEFAULT_SCHEDULE)
    one = router is None and len(sites) == 1
    if fast and defaults and one and sites[0].policy.name in FAST_POLICIES:
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
        engine = _Engine(jobs, sites, router, progress, events, schedule)
        engine.run()
        result = SimResult(jobs, sites, engine.rejected)
    if check:
        from aifactory.sim.checks import check_invariants

        check_invariants(result)
    return result
