"""One call from a trace file to a finished run: read, clean, route, simulate, measure.

The CLI and the benchmark go through here, so they measure the same path a user runs.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.broker.placement import get_placement_policy
from aifactory.errors import Invalid
from aifactory.sim.cleaning import clean_swf
from aifactory.sim.engine import (
    DEFAULT_EVENTS,
    DEFAULT_SCHEDULE,
    Progress,
    SimResult,
    event_order,
    make_sites,
    simulate,
)
from aifactory.sim.federation import FederationRouter, assign_homes, check_fits
from aifactory.sim.gpu_traces import read_alibaba_pods, read_philly, read_pollux
from aifactory.sim.metrics import compute_metrics
from aifactory.sim.model import SiteSpec, Trace
from aifactory.sim.policies import make_policy
from aifactory.sim.swf import read_swf

__all__ = [
    "ESTIMATES",
    "FEDERATION_MODES",
    "TRACE_FORMATS",
    "RunOutcome",
    "detect_format",
    "load_trace",
    "perfect_estimates",
    "run_trace",
]


#: ``--estimates``: the trace's own requested times, or the actual run times (perfect).
ESTIMATES = ("user", "perfect")
#: ``--federation``: the live broker's central admission, or a site queue per job on arrival.
FEDERATION_MODES = ("central", "route")


@dataclass(frozen=True)
class _ReadOptions:
    lenient: bool
    capacity: int | None
    estimate_from_runtime: bool


def _swf(path: Path, o: _ReadOptions) -> Trace:
    log = read_swf(path, lenient=o.lenient)
    return clean_swf(log, capacity=o.capacity, estimate_from_runtime=o.estimate_from_runtime)


def _gpu(reader: Callable[..., Trace]) -> Callable[[Path, _ReadOptions], Trace]:
    def read(path: Path, o: _ReadOptions) -> Trace:
        trace = reader(path, lenient=o.lenient)
        if o.capacity is not None:
            trace.capacity = o.capacity
        return trace

    return read


TRACE_FORMATS: dict[str, Callable[[Path, _ReadOptions], Trace]] = {
    "swf": _swf,
    "philly": _gpu(read_philly),
    "pollux": _gpu(read_pollux),
    "alibaba-pods": _gpu(read_alibaba_pods),
}

#: CSV header signatures: every listed column present means that format.
_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("philly", frozenset({"timestamp", "duration", "num_gpus"})),
    ("pollux", frozenset({"time", "application", "num_replicas"})),
    ("alibaba-pods", frozenset({"num_gpu", "gpu_milli", "creation_time"})),
)


def detect_format(path: Path) -> str:
    """``swf`` for ``*.swf[.gz]`` or text starting with ``;``, else by the CSV header."""
    if path.name.endswith((".swf", ".swf.gz")):
        return "swf"
    try:
        with path.open("rb") as raw:
            magic = raw.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rt", encoding="latin-1") as fh:
            first = fh.readline().strip()
    except (OSError, EOFError):
        return "swf"  # let the reader report the real problem with file and line
    columns = {c.strip() for c in first.split(",")}
    for name, needed in _SIGNATURES:
        if needed <= columns:
            return name
    return "swf"


def load_trace(
    path: Path | str,
    fmt: str = "auto",
    *,
    lenient: bool = False,
    capacity: int | None = None,
    estimate_from_runtime: bool = False,
    estimates: str = "user",
) -> Trace:
    """Read and clean a trace of any supported format.

    ``estimates="perfect"`` replaces every requested time by the job's actual run time.

    Raises:
        Invalid: Unknown format or estimates, or anything the reader rejects (naming file
            and line).
    """
    if estimates not in ESTIMATES:
        valid = ", ".join(ESTIMATES)
        raise Invalid.field(
            "estimates", "unknown", f"unknown estimates {estimates!r}; valid: {valid}"
        )
    p = Path(path)
    name = detect_format(p) if fmt == "auto" else fmt
    reader = TRACE_FORMATS.get(name)
    if reader is None:
        valid = ", ".join(["auto", *TRACE_FORMATS])
        raise Invalid.field("format", "unknown", f"unknown trace format {fmt!r}; valid: {valid}")
    trace = reader(p, _ReadOptions(lenient, capacity, estimate_from_runtime))
    return perfect_estimates(trace) if estimates == "perfect" else trace


def perfect_estimates(trace: Trace) -> Trace:
    """The trace with every job's requested time set to its actual run time (in place)."""
    for job in trace.jobs:
        job.req = job.run
    return trace


@dataclass(slots=True)
class RunOutcome:
    """A finished run and its metrics."""

    result: SimResult
    metrics: dict[str, Any]


def _single_site(trace: Trace) -> list[SiteSpec]:
    if trace.capacity is None:
        raise Invalid.field(
            "capacity", "required", f"{trace.name} does not say how big the machine is; "
            "pass --capacity or --sites",
        )  # fmt: skip
    if trace.capacity <= 0:
        raise Invalid.field("capacity", "positive", "capacity must be at least 1")
    wide = max(j.width for j in trace.jobs)
    if wide > trace.capacity:
        raise Invalid.field(
            "capacity", "too_small", f"a job needs {wide} units but capacity is {trace.capacity}"
        )
    return [SiteSpec(trace.name, trace.capacity, 1)]


def run_trace(
    trace: Trace,
    policy: str,
    *,
    sites: Sequence[SiteSpec] | None = None,
    placement: str = "broker",
    progress: Progress | None = None,
    check: bool = True,
    federation: str = "central",
    events: str = DEFAULT_EVENTS,
    schedule: str = DEFAULT_SCHEDULE,
) -> RunOutcome:
    """Simulate a trace on one machine (no ``sites``) or on a federation of sites.

    Args:
        trace: The jobs (their result fields are overwritten).
        policy: Each site's local scheduler (one machine, or ``federation="route"``).
        sites: The federation's sites; ``None`` runs one machine of the trace's size.
        placement: The placement policy ranking sites (federation runs).
        progress: Called now and then with (jobs finished, jobs in all).
        check: Verify the run's invariants afterwards.
        federation: ``central`` (the default): jobs wait in one queue and the live broker's
            admission (``broker.admission``) starts them; ``route``: each job goes to a site
            queue on arrival and the site's ``policy`` runs it.
        events: ``completions-first`` (default) or ``arrivals-first`` at equal times.
        schedule: ``event`` (default: a scheduling pass after every event) or ``timestamp``.

    Raises:
        Invalid: Unknown policy, placement, federation mode, event order or scheduling point,
            no capacity, or a job wider than every site.
    """
    make_policy(policy)  # fail on bad names before any work
    event_order(events, schedule)
    if federation not in FEDERATION_MODES:
        valid = ", ".join(FEDERATION_MODES)
        raise Invalid.field(
            "federation", "unknown", f"unknown federation mode {federation!r}; valid: {valid}"
        )
    specs = list(sites) if sites else _single_site(trace)
    runs = make_sites(specs, policy)
    if sites:
        router = FederationRouter(get_placement_policy(placement), specs)
        check_fits(trace.jobs, specs, trace.name)
        assign_homes(trace.jobs, len(specs))
    if sites and federation == "central":
        from aifactory.sim.central import simulate_central  # federation runs only

        result = simulate_central(
            trace.jobs, runs, router.policy, router.request,
            events=events, schedule=schedule, progress=progress, check=check,
        )  # fmt: skip
    else:
        result = simulate(
            trace.jobs, runs, router=router if sites else None, progress=progress, check=check,
            events=events, schedule=schedule,
        )  # fmt: skip
    context = {
        "trace": trace.name,
        "policy": "broker admission (EASY)" if sites and federation == "central" else policy,
        "placement": placement if sites else None,
        "federation": federation if sites else None,
        "events": events,
        "schedule": schedule,
        "unit": trace.unit,
        "skipped_lines": trace.skipped_lines,
        "dropped_by_filter": trace.dropped,
    }
    return RunOutcome(result, compute_metrics(result, **context))
