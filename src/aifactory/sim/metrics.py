"""Run metrics: wait, response time, bounded slowdown (tau = 10 s), utilization, makespan and
queue length over time; overall and per site.

Definitions (per finished job): wait = start - submit; response = end - submit;
bounded slowdown = max(1, response / max(run, 10)). Utilization is busy unit-seconds over
capacity x makespan, where makespan runs from the first submission to the last completion.
Queue length is time-weighted over the same span.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from aifactory.sim.checks import job_columns
from aifactory.sim.engine import SimResult, SiteRun

__all__ = ["TAU", "binned_series", "compute_metrics", "job_arrays"]

TAU = 10
Array = npt.NDArray[np.int64]


def job_arrays(result: SimResult) -> dict[str, Array]:
    """Columns of the placed jobs: submit, start, end, run, req, width, site, id."""
    names = ("id", "submit", "start", "end", "run", "req", "width", "site")
    columns = job_columns(result.jobs, names)
    placed = columns["site"] >= 0
    if placed.all():
        return columns
    return {k: v[placed] for k, v in columns.items()}


def _job_stats(a: dict[str, Array]) -> dict[str, float]:
    if a["submit"].size == 0:
        return {"jobs": 0}
    wait = a["start"] - a["submit"]
    response = a["end"] - a["submit"]
    bsld = np.maximum(1.0, response / np.maximum(a["run"], TAU))
    return {
        "jobs": int(wait.size),
        "mean_wait_s": float(wait.mean()),
        "median_wait_s": float(np.median(wait)),
        "p95_wait_s": float(np.percentile(wait, 95)),
        "max_wait_s": int(wait.max()),
        "mean_response_s": float(response.mean()),
        "mean_bounded_slowdown": float(bsld.mean()),
        "max_bounded_slowdown": float(bsld.max()),
    }


def _step_integral(times: Array, values: Array, t0: int, t1: int) -> float:
    """Integral over [t0, t1] of a right-continuous step function sampled at ``times``."""
    if times.size == 0 or t1 <= t0:
        return 0.0
    edges = np.clip(np.append(times, t1), t0, t1)
    return float(np.sum(values * np.diff(edges)))


def _site_stats(site: SiteRun, a: dict[str, Array], index: int, t0: int, t1: int) -> dict[str, Any]:
    mask = a["site"] == index
    sub = {k: v[mask] for k, v in a.items()}
    stats: dict[str, Any] = {"name": site.spec.name, "capacity": site.machine.capacity}
    stats.update(_job_stats(sub))
    span = max(t1 - t0, 1)
    work = float(np.sum(sub["run"] * sub["width"]))
    stats["busy_unit_seconds"] = work
    stats["utilization"] = work / (site.machine.capacity * span)
    times = np.frombuffer(site.times, dtype=np.int64)
    queued = np.frombuffer(site.queued, dtype=np.int64)
    stats["mean_queue_length"] = _step_integral(times, queued, t0, t1) / span
    stats["max_queue_length"] = int(queued.max()) if queued.size else 0
    return stats


def compute_metrics(result: SimResult, **context: Any) -> dict[str, Any]:
    """Overall and per-site metrics as a JSON-ready dict; ``context`` is copied in verbatim."""
    a = job_arrays(result)
    t0 = int(a["submit"].min()) if a["submit"].size else 0
    t1 = int(a["end"].max()) if a["end"].size else 0
    sites = [_site_stats(s, a, i, t0, t1) for i, s in enumerate(result.sites)]
    overall: dict[str, Any] = dict(_job_stats(a))
    capacity = sum(s.machine.capacity for s in result.sites)
    work = sum(s["busy_unit_seconds"] for s in sites)
    overall.update(
        {
            "rejected": sum(result.rejected.values()),
            "makespan_s": t1 - t0,
            "first_submit_s": t0,
            "last_end_s": t1,
            "capacity": capacity,
            "utilization": work / (capacity * max(t1 - t0, 1)),
            "mean_queue_length": sum(s["mean_queue_length"] for s in sites),
        }
    )
    if result.queue_times:  # central admission: jobs wait in one queue, not at the sites
        times = np.frombuffer(result.queue_times, dtype=np.int64)
        queued = np.frombuffer(result.queue_len, dtype=np.int64)
        overall["mean_queue_length"] = _step_integral(times, queued, t0, t1) / max(t1 - t0, 1)
        overall["max_queue_length"] = int(queued.max()) if queued.size else 0
    return {
        **context,
        "overall": overall,
        "sites": sites,
        "rejected_reasons": dict(result.rejected),
    }


def binned_series(site: SiteRun, t0: int, t1: int, bins: int = 200) -> dict[str, Array | Any]:
    """Time-weighted averages of busy fraction and queue length in ``bins`` equal bins."""
    times = np.frombuffer(site.times, dtype=np.int64).astype(np.float64)
    edges = np.linspace(t0, max(t1, t0 + 1), bins + 1)
    out: dict[str, Any] = {"edges": edges}
    for name, raw, scale in (
        ("utilization", site.busy, site.machine.capacity),
        ("queue", site.queued, 1),
    ):
        values = np.frombuffer(raw, dtype=np.int64).astype(np.float64) / scale
        if times.size == 0:
            out[name] = np.zeros(bins)
            continue
        # The integral of a step function is piecewise linear, so interpolating it is exact.
        knots = np.append(times, max(t1, times[-1]))
        cumulative = np.concatenate(([0.0], np.cumsum(values * np.diff(knots))))
        at_edges = np.interp(edges, knots, cumulative, left=0.0)
        out[name] = np.diff(at_edges) / np.diff(edges)
    return out
