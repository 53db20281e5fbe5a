"""Capacity planning runs: fit a workload to the federation, replay it before and after the
changes, and measure both the same way (wait percentiles, bounded slowdown, utilisation per
factory, GPU-hours by funding source, and the wait of Playground-sized jobs).

Load: a trace recorded on one machine, replayed as it is on a federation many times larger,
would leave the federation idle and every change would look useless. So arrivals are scaled
(submit times stretched or compressed; sizes and run times stay) until the *before* federation
sees the offered load ``target``: by default the load the trace put on its own machine, so a
trace from a busy machine keeps the federation as busy; for a trace that does not say how big
its machine was, :data:`DEFAULT_LOAD`. The federation's own history is replayed as recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from aifactory.sim.engine import SimResult
from aifactory.sim.model import Job, Trace
from aifactory.sim.plan import Change, Factory, sites_of
from aifactory.sim.runner import run_trace

__all__ = [
    "DEFAULT_LOAD",
    "FUNDING_SOURCES",
    "PLAYGROUND_MAX_GPUS",
    "PLAYGROUND_MAX_RUN_S",
    "Workload",
    "compare",
    "fit_workload",
    "history_trace",
    "measure",
    "offered_load",
]

DEFAULT_LOAD = 0.85
#: A Playground-sized job: what a start-up's first runs look like (EuroHPC Playground access).
PLAYGROUND_MAX_GPUS = 8
PLAYGROUND_MAX_RUN_S = 4 * 3600
#: GPU-hours split by each factory's shares: its EU share is the Digital Europe Programme's
#: (infrastructure), the national share the hosting and participating states', and the
#: commercial share is sold.
FUNDING_SOURCES = ("eu_digital_europe", "national", "commercial")
Progress = Callable[[int, int], None]


@dataclass
class Workload:
    """The jobs to replay and how they were fitted to the federation."""

    trace: Trace
    source: str
    jobs_in_source: int
    dropped_too_wide: int
    cut_to: int | None
    load_target: float | None
    time_factor: float
    offered_load_before: float


def history_trace(rows: list[dict[str, Any]], name: str = "federation-history") -> Trace:
    """Trace jobs from the federation's job history (``GET /planning/history``'s ``jobs``):
    submit, run and requested time in seconds from the first submission, width in GPUs, and
    the project as the user (a project's jobs share a home site)."""
    from datetime import datetime

    def seconds(text: Any) -> float:
        value = text if isinstance(text, datetime) else datetime.fromisoformat(str(text))
        return value.timestamp()

    ordered = sorted(rows, key=lambda r: (seconds(r["submitted_at"]), r["id"]))
    t0 = seconds(ordered[0]["submitted_at"]) if ordered else 0.0
    projects: dict[str, int] = {}
    jobs = []
    for r in ordered:
        run = max(1, round(seconds(r["ended_at"]) - seconds(r["started_at"])))
        user = projects.setdefault(str(r["project"]), len(projects))
        submit = round(seconds(r["submitted_at"]) - t0)
        jobs.append(
            Job(int(r["id"]), submit, run, max(run, int(r["time_limit_s"])), int(r["gpus"]), user)
        )
    return Trace(name, jobs, None, "gpus")


def offered_load(jobs: list[Job], capacity: int) -> float:
    """Work offered over the submit span, as a fraction of ``capacity`` (the usual
    definition: sum of run x width over span x capacity)."""
    if not jobs or capacity <= 0:
        return 0.0
    span = max(jobs[-1].submit - jobs[0].submit, 1)
    return sum(j.run * j.width for j in jobs) / (span * capacity)


def _copy(jobs: list[Job], factor: float = 1.0) -> list[Job]:
    t0 = jobs[0].submit if jobs else 0
    return [
        Job(j.id, round((j.submit - t0) * factor), j.run, j.req, j.width, j.user, j.line)
        for j in jobs
    ]


def fit_workload(
    trace: Trace,
    source: str,
    widest: int,
    capacity: int,
    *,
    load: float | None = None,
    keep_arrivals: bool = False,
    max_jobs: int | None = None,
) -> Workload:
    """Drop jobs wider than ``widest`` GPUs, keep the first ``max_jobs``, scale arrivals.

    Args:
        trace: Jobs in submit order; never changed (the result holds copies).
        source: What the jobs are, for the report.
        widest: The largest partition a job could run on (before and after).
        capacity: GPUs of the *before* federation.
        load: Offered load the before federation should see; ``None``: the trace's own load
            on its own machine, or :data:`DEFAULT_LOAD` when the trace does not say its size.
        keep_arrivals: Replay the submit times as recorded (the federation's own history).
        max_jobs: Keep only the first jobs (the portal bounds its runs so).
    """
    fitting = [j for j in trace.jobs if 0 < j.width <= widest]
    kept = fitting[:max_jobs] if max_jobs else fitting
    cut = max_jobs if max_jobs and len(fitting) > max_jobs else None
    target = None if keep_arrivals and load is None else load
    if target is None and not keep_arrivals:
        own = offered_load(kept, trace.capacity) if trace.capacity else 0.0
        target = own if own > 0 else DEFAULT_LOAD
    raw = offered_load(kept, capacity)
    factor = raw / target if target and raw > 0 else 1.0
    jobs = _copy(kept, factor)
    fitted = Trace(trace.name, jobs, capacity, "gpus", trace.skipped_lines, dict(trace.dropped))
    dropped = len(trace.jobs) - len(fitting)
    return Workload(
        fitted, source, len(trace.jobs), dropped, cut, target, factor, offered_load(jobs, capacity)
    )


def _percentiles(values: np.ndarray[Any, Any]) -> dict[str, float]:
    if values.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(values.mean())}


def _factories(
    result: SimResult, factories: list[Factory], owner: list[int], span: int
) -> dict[str, dict[str, float]]:
    busy = [0.0] * len(factories)
    for job in result.jobs:
        if job.site >= 0:
            busy[owner[job.site]] += job.run * job.width
    return {
        f.name: {
            "gpus": f.gpus,
            "utilisation": busy[i] / (f.gpus * span) if f.gpus else 0.0,
            "gpu_hours": busy[i] / 3600.0,
        }
        for i, f in enumerate(factories)
    }


def _funding(
    per_factory: dict[str, dict[str, float]], factories: list[Factory]
) -> dict[str, float]:
    out = dict.fromkeys(FUNDING_SOURCES, 0.0)
    for f in factories:
        hours = per_factory[f.name]["gpu_hours"]
        total = (f.eu + f.national + f.commercial) or 1.0
        for key, share in zip(FUNDING_SOURCES, (f.eu, f.national, f.commercial), strict=True):
            out[key] += hours * share / total
    return out


def measure(
    workload: Workload,
    factories: list[Factory],
    policy: str,
    placement: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Replay the workload on ``factories`` and measure it."""
    sites, owner = sites_of(factories)
    trace = Trace(workload.trace.name, _copy(workload.trace.jobs), None, "gpus")
    outcome = run_trace(trace, policy, sites=sites, placement=placement, progress=progress)
    placed = [j for j in outcome.result.jobs if j.site >= 0]
    submit = np.array([j.submit for j in placed], dtype=np.int64)
    start = np.array([j.start for j in placed], dtype=np.int64)
    end = np.array([j.end for j in placed], dtype=np.int64)
    run = np.array([j.run for j in placed], dtype=np.int64)
    small = np.array(
        [j.width <= PLAYGROUND_MAX_GPUS and j.run <= PLAYGROUND_MAX_RUN_S for j in placed],
        dtype=bool,
    )
    wait = start - submit
    span = int(end.max() - submit.min()) if placed else 1
    per_factory = _factories(outcome.result, factories, owner, max(span, 1))
    capacity = sum(f.gpus for f in factories if f.operational)
    bsld = np.maximum(1.0, (end - submit) / np.maximum(run, 10)) if placed else np.ones(1)
    return {
        "policy": policy,
        "placement": placement,
        "capacity_gpus": capacity,
        "jobs": len(placed),
        "rejected": sum(outcome.result.rejected.values()),
        "wait_s": _percentiles(wait),
        "mean_bounded_slowdown": float(bsld.mean()),
        "playground": {"jobs": int(small.sum()), "wait_s": _percentiles(wait[small])},
        "utilisation": float(np.sum(run * np.array([j.width for j in placed], dtype=np.int64)))
        / (max(span, 1) * max(capacity, 1)),
        "factories": per_factory,
        "gpu_hours_by_funding": _funding(per_factory, factories),
        "_waits": wait,
    }


def compare(
    workload: Workload,
    before: dict[str, Any],
    after: dict[str, Any],
    changes: list[Change],
) -> dict[str, Any]:
    """The JSON report: workload, changes, before and after (the wait arrays stay out)."""
    return {
        "workload": {
            "source": workload.source,
            "trace": workload.trace.name,
            "jobs_in_source": workload.jobs_in_source,
            "jobs": len(workload.trace.jobs),
            "dropped_too_wide": workload.dropped_too_wide,
            "cut_to": workload.cut_to,
            "load_target": workload.load_target,
            "time_factor": workload.time_factor,
            "offered_load_before": workload.offered_load_before,
            "playground": {"max_gpus": PLAYGROUND_MAX_GPUS, "max_run_s": PLAYGROUND_MAX_RUN_S},
        },
        "changes": [c.text for c in changes],
        "before": {k: v for k, v in before.items() if not k.startswith("_")},
        "after": {k: v for k, v in after.items() if not k.startswith("_")},
    }
