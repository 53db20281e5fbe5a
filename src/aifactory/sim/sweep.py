"""What-if sweeps: one trace, many scenarios, run in parallel worker processes.

A scenario changes what a planner asks about: the local policy, the machine size, how busy
the machine is (arrivals compressed by a load factor) or the federation and its placement.
Each scenario replays its own copy of the jobs, so scenarios are independent and the results
do not depend on how many processes run them (``tests/unit/sim/test_sim_sweep.py``).

The trace travels to each worker once, as integer columns (compact to pickle), and every
scenario is one task; a worker sends back the metrics and the wait of every job.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from aifactory.errors import Invalid
from aifactory.sim.checks import job_columns
from aifactory.sim.model import Job, SiteSpec, Trace

__all__ = ["Scenario", "ScenarioResult", "default_workers", "run_scenarios"]

_COLUMNS = ("id", "submit", "run", "req", "width", "user", "line", "home")


@dataclass(frozen=True, slots=True)
class Scenario:
    """One what-if question about a trace.

    Attributes:
        name: Label in tables and files.
        policy: Local scheduling policy (``fcfs``, ``easy``, ...).
        capacity: Machine size instead of the trace's (single machine only).
        load: Arrival-rate factor: submit times are divided by it (1.2 = 20 % busier).
        sites: A federation instead of one machine.
        placement: Placement policy when ``sites`` is given.
        federation: ``central`` (the live broker's admission) or ``route`` (site queues).
        events: ``completions-first`` or ``arrivals-first`` at equal times.
        schedule: ``event`` or ``timestamp`` (when the scheduler runs).
    """

    name: str
    policy: str = "easy"
    capacity: int | None = None
    load: float = 1.0
    sites: tuple[SiteSpec, ...] | None = None
    placement: str = "broker"
    federation: str = "central"
    events: str = "completions-first"
    schedule: str = "event"


@dataclass(slots=True)
class ScenarioResult:
    """A scenario's metrics (as :func:`aifactory.sim.runner.run_trace` gives them) and the
    wait of every placed job, in trace order."""

    scenario: Scenario
    metrics: dict[str, Any]
    waits: npt.NDArray[np.int64] = field(repr=False)


def default_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _pack(trace: Trace) -> dict[str, Any]:
    packed: dict[str, Any] = {k: array("q", [getattr(j, k) for j in trace.jobs]) for k in _COLUMNS}
    packed["meta"] = (trace.name, trace.capacity, trace.unit, trace.skipped_lines, trace.dropped)
    return packed


def _unpack(packed: dict[str, Any], load: float) -> Trace:
    name, capacity, unit, skipped, dropped = packed["meta"]
    columns = [packed[k] for k in _COLUMNS]
    jobs = [Job(*row) for row in zip(*columns, strict=True)]
    if load != 1.0:
        for job in jobs:
            job.submit = int(job.submit / load)  # monotone: the order of submits is kept
    return Trace(name, jobs, capacity, unit, skipped, dict(dropped))


def _run_one(packed: dict[str, Any], scenario: Scenario) -> ScenarioResult:
    from aifactory.sim.runner import run_trace

    trace = _unpack(packed, scenario.load)
    if scenario.capacity is not None:
        trace.capacity = scenario.capacity
    outcome = run_trace(
        trace, scenario.policy, sites=scenario.sites, placement=scenario.placement,
        federation=scenario.federation, events=scenario.events, schedule=scenario.schedule,
    )  # fmt: skip
    metrics = dict(outcome.metrics, scenario=scenario.name, load=scenario.load)
    a = job_columns(trace.jobs, ("submit", "start", "site"))
    waits = (a["start"] - a["submit"])[a["site"] >= 0]
    return ScenarioResult(scenario, metrics, waits)


_WORKER_TRACE: dict[str, Any] = {}


def _init_worker(packed: dict[str, Any]) -> None:
    _WORKER_TRACE.clear()
    _WORKER_TRACE.update(packed)


def _run_in_worker(scenario: Scenario) -> ScenarioResult:
    return _run_one(_WORKER_TRACE, scenario)


def run_scenarios(
    trace: Trace,
    scenarios: Sequence[Scenario],
    *,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ScenarioResult]:
    """Run every scenario on its own copy of the trace's jobs.

    Args:
        trace: The workload (its jobs are not modified).
        scenarios: What to run; names must be unique.
        workers: Processes to use; ``None`` = one per CPU (at most one per scenario); 1 runs
            everything in this process.
        progress: Called after each scenario with (scenarios done, scenarios in all).

    Returns:
        One result per scenario, in the order given, whatever order they finished in.

    Raises:
        Invalid: Duplicate names, or what :func:`aifactory.sim.runner.run_trace` rejects.
    """
    if len({s.name for s in scenarios}) != len(scenarios):
        raise Invalid.field("scenario", "duplicate", "scenario names must be unique")
    count = min(workers or default_workers(), len(scenarios))
    packed = _pack(trace)
    results: list[ScenarioResult | None] = [None] * len(scenarios)
    if count <= 1:
        for index, scenario in enumerate(scenarios):
            results[index] = _run_one(packed, scenario)
            if progress is not None:
                progress(index + 1, len(scenarios))
        return [r for r in results if r is not None]
    with ProcessPoolExecutor(count, initializer=_init_worker, initargs=(packed,)) as pool:
        # Every task is submitted before the first completes: with fork, the workers start now,
        # before the caller's progress display starts any thread.
        futures: dict[Future[ScenarioResult], int] = {
            pool.submit(_run_in_worker, s): i for i, s in enumerate(scenarios)
        }
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(scenarios))
    return [r for r in results if r is not None]
