"""The standard cleaning filter that turns SWF records into simulator jobs.

Rules, applied to every record (the first that fails names the drop reason):

1. ``too_wide``: requested (field 8) or allocated (field 5) processors exceed MaxProcs.
2. ``no_procs``: width is requested processors when > 0, else allocated ones; neither > 0.
3. ``no_runtime``: run time (field 4) must be > 0.
4. ``no_estimate``: requested time (field 9) must be > 0 (unless ``estimate_from_runtime``,
   which substitutes the run time for traces that have no estimates at all).
5. ``negative_submit``: submit time (field 2) must be >= 0.

Kept jobs have their run time capped at the requested time: jobs are killed at their estimate.
"""

from __future__ import annotations

from aifactory.sim.model import Job, Trace
from aifactory.sim.swf import SwfLog, SwfRecord
from aifactory.sim.tracefile import trace_error

__all__ = ["DROP_REASONS", "clean_swf"]

DROP_REASONS: tuple[str, ...] = (
    "too_wide",
    "no_procs",
    "no_runtime",
    "no_estimate",
    "negative_submit",
)


def _drop_reason(rec: SwfRecord, max_procs: int, estimate_from_runtime: bool) -> str | None:
    if rec.req_procs > max_procs or rec.alloc_procs > max_procs:
        return "too_wide"
    if rec.req_procs <= 0 and rec.alloc_procs <= 0:
        return "no_procs"
    if rec.run <= 0:
        return "no_runtime"
    if rec.req_time <= 0 and not estimate_from_runtime:
        return "no_estimate"
    if rec.submit < 0:
        return "negative_submit"
    return None


def clean_swf(
    log: SwfLog,
    *,
    capacity: int | None = None,
    estimate_from_runtime: bool = False,
) -> Trace:
    """Apply the cleaning filter and build the job list.

    Args:
        log: Records as read by :func:`aifactory.sim.swf.read_swf`.
        capacity: Machine size; defaults to the header's MaxProcs (or MaxNodes).
        estimate_from_runtime: Use the run time as the estimate where requested time is unknown.

    Raises:
        Invalid: The machine size is unknown, or no job survives the filter.
    """
    max_procs = capacity if capacity is not None else log.max_procs
    if max_procs is None or max_procs <= 0:
        raise trace_error(log.path, "header has no MaxProcs or MaxNodes; pass --capacity")
    dropped = dict.fromkeys(DROP_REASONS, 0)
    jobs: list[Job] = []
    for rec in log.records:
        reason = _drop_reason(rec, max_procs, estimate_from_runtime)
        if reason is not None:
            dropped[reason] += 1
            continue
        req = rec.req_time if rec.req_time > 0 else rec.run
        width = rec.req_procs if rec.req_procs > 0 else rec.alloc_procs
        jobs.append(Job(rec.job, rec.submit, min(rec.run, req), req, width, rec.user, rec.line))
    if not jobs:
        raise trace_error(log.path, f"no job passes the cleaning filter (dropped: {dropped})")
    name = log.path.rsplit("/", 1)[-1]
    return Trace(name, jobs, max_procs, "procs", log.skipped_lines, dropped)
