"""Central admission, the default for federation runs: the live broker's decisions, simulated.

Jobs wait in one central queue, as they do in the live broker. At every scheduling point the
simulator builds what a broker pass reads (each site's free GPUs, the predicted ends of its
running jobs = start + requested time, the budget left) and calls the function the live broker
calls, :class:`aifactory.broker.admission.Admission`: jobs are taken in the fair order across
projects (a trace's user is its project), each starts at the best-ranked site with the GPUs
free whose next-in-line job it cannot delay (EASY per site), or waits centrally.

Budgets are kept as the live ledger keeps them: a job's requested GPU-hours x charge factor are
reserved when it starts and its used hours (run time x GPUs x charge factor) are charged when
it ends, the rest released.
"""

from __future__ import annotations

import heapq
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from aifactory.broker.admission import Admission, Decisions, Pending, Pool, Spec, fair_order
from aifactory.broker.placement import JobRequest, PlacementPolicy, SiteView
from aifactory.sim.engine import (
    DEFAULT_EVENTS,
    DEFAULT_SCHEDULE,
    Progress,
    SimResult,
    SiteRun,
    event_order,
    validate_jobs,
)
from aifactory.sim.machine import InvariantViolation
from aifactory.sim.model import Job

__all__ = ["CentralEngine", "SimCandidate", "simulate_central"]

_DIGITS = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True, slots=True)
class SimCandidate:
    """A site as admission sees it for any project: the site's one shared allocation."""

    view: SiteView
    allocation_id: int  # the site's index
    pool: str
    charge_factor: float
    site_down: bool = False
    held_gpu_hours: float = 0.0


class CentralEngine:
    """The event loop of central admission over the sites of a federation run.

    Args:
        jobs: Jobs in submit order (result fields are set here).
        sites: Site state from ``make_sites`` (their local policies are not used).
        policy: The placement policy ranking sites.
        request: A job's ``JobRequest`` (the router's shape: GPUs per node and nodes).
        events: ``completions-first`` or ``arrivals-first`` at equal times.
        schedule: ``event`` (a pass after every event) or ``timestamp`` (one per timestamp).
    """

    def __init__(
        self,
        jobs: list[Job],
        sites: list[SiteRun],
        policy: PlacementPolicy,
        request: Callable[[Job], JobRequest],
        *,
        events: str = DEFAULT_EVENTS,
        schedule: str = DEFAULT_SCHEDULE,
        progress: Progress | None = None,
    ) -> None:
        self.completion_first, self.arrival_first = event_order(events, schedule)
        self.per_event = schedule == "event"
        self.jobs, self.sites, self.policy = jobs, sites, policy
        self.request, self.progress = request, progress
        self.waiting: dict[int, Pending] = {}  # job index -> pending, in arrival order
        self.held = [0.0] * len(sites)
        self.heap: list[tuple[int, int, int, object]] = []
        self.seq = 0
        self.done = 0
        self.rejected: dict[str, int] = {}
        self.queue_times: array[int] = array("q")
        self.queue_len: array[int] = array("q")

    def _push(self, time: int, prio: int, payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (time, prio, self.seq, payload))

    def run(self) -> None:
        """Replay every job; afterwards each placed job has its site, start and end."""
        if self.jobs:
            self._push(self.jobs[0].submit, self.arrival_first, 0)
        heap, count = self.heap, 0
        while heap:
            now, _, _, payload = heapq.heappop(heap)
            if isinstance(payload, Job):
                self._complete(payload, now)
            else:
                self._arrive(payload if isinstance(payload, int) else 0, now)
            if self.per_event or not heap or heap[0][0] != now:
                self._pass(now)
            count += 1
            if self.progress is not None and count % 20_000 == 0:
                self.progress(self.done, len(self.jobs))
        if self.progress is not None:
            self.progress(self.done, len(self.jobs))

    def _arrive(self, index: int, now: int) -> None:
        job = self.jobs[index]
        if index + 1 < len(self.jobs):
            self._push(self.jobs[index + 1].submit, self.arrival_first, index + 1)
        project = str(job.user) if job.user >= 0 else f"job-{job.id}"
        self.waiting[index] = Pending(index, project, Spec(self.request(job)))
        self._record_queue(now)

    def _complete(self, job: Job, now: int) -> None:
        site = self.sites[job.site]
        site.machine.finish(job)
        factor = site.spec.charge_factor
        reserved = job.width * job.req / 3600.0 * factor
        self.held[job.site] -= reserved
        if site.budget_left is not None:  # charge the hours used, release the rest
            site.budget_left += reserved - job.width * job.run / 3600.0 * factor
        self.done += 1
        site.record(now)

    def _pass(self, now: int) -> None:
        """One broker pass over the central queue, applied at once."""
        if not self.waiting:
            return
        cands = [self._candidate(i, site) for i, site in enumerate(self.sites)]
        pools = {c.pool: Pool(c.view.free_gpus, list(s.machine.running)) for c, s in
                 zip(cands, self.sites, strict=True)}  # fmt: skip
        waiting = self.waiting
        projects = {p.project: cands for p in waiting.values()}
        order = fair_order((p.id, p.project) for p in waiting.values())
        admission = Admission(self.policy, float(now), projects, pools, {}, until_full=True)
        self._apply(admission.decide(waiting[i] for i in order), now)

    def _candidate(self, index: int, site: SiteRun) -> SimCandidate:
        spec, m = site.spec, site.machine
        # As a broker pass sees a site (services.candidates): free GPUs and the budget left;
        # nothing queued there (jobs wait centrally). The admission fills the running ends in
        # from the pools, as it does for the live pass.
        view = SiteView(
            spec.name, spec.country, spec.operational, spec.gpu_model, spec.gpu_memory_gb,
            spec.units_per_node, spec.nodes, m.free, m.capacity, 0.0, spec.charge_factor,
            site.budget_left,
        )  # fmt: skip
        return SimCandidate(view, index, spec.name, spec.charge_factor, False, self.held[index])

    def _apply(self, decided: Decisions[SimCandidate], now: int) -> None:
        for place in decided.place:
            self._start(place.job, place.ready[0].allocation_id, now)
        for end in decided.end:
            rejected = end.rejected or {}
            reason = rejected[min(rejected)] if rejected else end.reason
            key = _DIGITS.sub("N", reason)
            self.rejected[key] = self.rejected.get(key, 0) + 1
            del self.waiting[end.job]
        if decided.place or decided.end:
            self._record_queue(now)

    def _start(self, index: int, site_index: int, now: int) -> None:
        job, site = self.jobs[index], self.sites[site_index]
        m = site.machine
        m.enqueue(job)  # through the site's books (queued work), then straight out
        m.start(job, now)
        m.queue.clear()
        job.site = site_index
        reserved = job.width * job.req / 3600.0 * site.spec.charge_factor
        self.held[site_index] += reserved
        if site.budget_left is not None:
            site.budget_left -= reserved
        del self.waiting[index]
        self._push(job.end, self.completion_first, job)
        site.record(now)

    def _record_queue(self, now: int) -> None:
        """(time, jobs waiting centrally); a later sample at the same time wins."""
        if self.queue_times and self.queue_times[-1] == now:
            self.queue_len[-1] = len(self.waiting)
            return
        self.queue_times.append(now)
        self.queue_len.append(len(self.waiting))


def simulate_central(
    jobs: list[Job],
    sites: list[SiteRun],
    policy: PlacementPolicy,
    request: Callable[[Job], JobRequest],
    *,
    events: str = DEFAULT_EVENTS,
    schedule: str = DEFAULT_SCHEDULE,
    progress: Progress | None = None,
    check: bool = True,
) -> SimResult:
    """Replay jobs through central admission (see the module); arguments as
    :class:`CentralEngine`, ``check`` as :func:`aifactory.sim.engine.simulate`.

    Raises:
        InvariantViolation: A scheduling invariant broke.
        Invalid: An unknown event order or scheduling point.
    """
    validate_jobs(jobs)
    for job in jobs:
        job.start = job.end = job.site = -1
    engine = CentralEngine(
        jobs, sites, policy, request, events=events, schedule=schedule, progress=progress
    )
    engine.run()
    if engine.waiting:  # pragma: no cover - every pass after the last end decides them all
        raise InvariantViolation(f"{len(engine.waiting)} jobs still wait after the last event")
    result = SimResult(jobs, sites, engine.rejected, engine.queue_times, engine.queue_len)
    if check:
        from aifactory.sim.checks import check_invariants

        check_invariants(result)
    return result
