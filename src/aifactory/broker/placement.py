"""Placement policies: pure functions from a job request and site views to a ranked decision.

The live broker and the simulator call the same code, so nothing here does I/O or reads a
clock: ``now`` is an argument. Every policy applies the same hard constraints (operational site,
hardware that fits, allowed country, enough budget); they differ only in how they rank the sites
that pass. Each rejected site carries a reason a user can act on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from aifactory.broker.backfill import shadow_at
from aifactory.errors import Invalid

__all__ = [
    "MIN_WAIT_S",
    "PLACEMENT_POLICIES",
    "PREFER_TOLERANCE_S",
    "Decision",
    "JobRequest",
    "PlacementPolicy",
    "SiteView",
    "estimate_start",
    "get_placement_policy",
    "preference_rank",
    "start_basis",
]

#: A preferred site wins over a sooner one when it starts at most this much later (seconds).
PREFER_TOLERANCE_S = 1800.0
#: The earliest start promised where the GPUs are not free now: never "now" for a full site.
MIN_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class SiteView:
    """What a placement policy may know about one site (one partition) at one instant.

    Attributes:
        name: Unique site (partition) name.
        country: ISO 3166 code of the hosting country.
        operational: Whether the site accepts work now.
        gpu_model: GPU model of the partition, ``None`` when unknown.
        gpu_memory_gb: Memory per GPU, ``None`` when unknown.
        gpus_per_node: GPUs in one node.
        nodes: Nodes in the partition.
        free_gpus: GPUs idle now.
        total_gpus: GPUs in the partition.
        queued_gpu_seconds: Requested GPU-seconds of work waiting ahead of a new job (jobs
            waiting for the site, and jobs placed there that have not started).
        charge_factor: Normalised GPU-hours charged per GPU-hour used.
        budget_remaining_gpu_hours: Normalised GPU-hours left; ``None`` means unlimited.
        est_start_s: Start-time estimate from the site's own scheduler, when it has one.
        max_time_s: Longest time limit the partition accepts; ``None`` means no limit.
        running_ends: ``(predicted end, GPUs)`` of the jobs running there (start + time limit).
    """

    name: str
    country: str
    operational: bool
    gpu_model: str | None
    gpu_memory_gb: float | None
    gpus_per_node: int
    nodes: int
    free_gpus: int
    total_gpus: int
    queued_gpu_seconds: float
    charge_factor: float = 1.0
    budget_remaining_gpu_hours: float | None = None
    est_start_s: float | None = None
    max_time_s: float | None = None
    running_ends: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class JobRequest:
    """The shape and constraints of one job, independent of where it runs."""

    nodes: int
    gpus_per_node: int
    time_limit_s: float
    gpu_model: str | None = None
    min_gpu_memory_gb: float | None = None
    allowed_countries: frozenset[str] | None = None
    home_site: str | None = None
    #: Sites the project prefers, best first: ``FACTORY``, ``FACTORY/SYSTEM`` or a full name.
    prefer: tuple[str, ...] = ()

    @property
    def gpus(self) -> int:
        """Total GPUs the job asks for."""
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True, slots=True)
class Decision:
    """A policy's answer: the chosen site (or none), the ranking, and why others were left out."""

    chosen: str | None
    ranked: tuple[str, ...]
    rejected: Mapping[str, str] = field(default_factory=dict)
    est_start_s: Mapping[str, float] = field(default_factory=dict)


class PlacementPolicy(Protocol):
    """A placement policy: a name and a pure ``place`` function."""

    @property
    def name(self) -> str: ...

    def place(self, job: JobRequest, sites: tuple[SiteView, ...], now: float) -> Decision: ...


def _hardware_reason(job: JobRequest, site: SiteView) -> str | None:
    if job.gpu_model is not None and site.gpu_model != job.gpu_model:
        return f"needs GPU model {job.gpu_model}, partition has {site.gpu_model or 'unknown'}"
    if job.min_gpu_memory_gb is not None and (
        site.gpu_memory_gb is None or site.gpu_memory_gb < job.min_gpu_memory_gb
    ):
        have = "unknown" if site.gpu_memory_gb is None else f"{site.gpu_memory_gb:g} GB"
        return f"needs {job.min_gpu_memory_gb:g} GB per GPU, partition has {have}"
    if job.gpus_per_node > site.gpus_per_node:
        return f"needs {job.gpus_per_node} GPUs per node, partition has {site.gpus_per_node}"
    if job.nodes > site.nodes:
        return f"needs {job.nodes} nodes, partition has {site.nodes}"
    if job.gpus > site.total_gpus:
        return f"needs {job.gpus} GPUs, the site has {site.total_gpus} in all"
    if site.max_time_s is not None and job.time_limit_s > site.max_time_s:
        return (
            f"needs a time limit of {job.time_limit_s / 3600:g} h, "
            f"partition allows {site.max_time_s / 3600:g} h"
        )
    return None


def _constraint_reason(job: JobRequest, site: SiteView) -> str | None:
    """The first hard constraint the site breaks for this job, or ``None`` when it passes."""
    if not site.operational:
        return "site is not operational"
    if site.total_gpus <= 0:
        return "partition has no GPUs"
    hardware = _hardware_reason(job, site)
    if hardware is not None:
        return hardware
    if job.allowed_countries is not None and site.country not in job.allowed_countries:
        allowed = ", ".join(sorted(job.allowed_countries))
        return f"country {site.country} is not allowed (allowed: {allowed})"
    if site.budget_remaining_gpu_hours is not None:
        cost = job.gpus * job.time_limit_s / 3600.0 * site.charge_factor
        if cost > site.budget_remaining_gpu_hours:
            return (
                f"needs {cost:.1f} GPU-hours of budget, "
                f"{site.budget_remaining_gpu_hours:.1f} remain"
            )
    return None


def estimate_start(job: JobRequest, site: SiteView, now: float) -> float:
    """When the job would start at ``site``: the site's own estimate if it gave one (Slurm's
    ``squeue --start``), else one from its queue.

    From the queue: now when enough GPUs are free and nothing waits ahead; otherwise the
    moment enough GPUs are free by the predicted ends of the running jobs (the shadow time of
    EASY backfilling), plus the work waiting ahead spread over the whole partition (a fluid
    estimate). A site without the GPUs free is never "now": at least :data:`MIN_WAIT_S`.
    """
    if site.est_start_s is not None:
        return max(now, site.est_start_s)
    drain = max(site.queued_gpu_seconds, 0.0) / max(site.total_gpus, 1)
    if site.free_gpus >= job.gpus:
        return now + drain
    running = sorted((max(end, now), i, gpus) for i, (end, gpus) in enumerate(site.running_ends))
    idle = max(site.total_gpus - sum(gpus for _, _, gpus in running), 0)
    try:
        freed = float(shadow_at(idle, running, job.gpus)[0])
    except ValueError:  # more GPUs than the site has: rejected before this; be safe anyway
        freed = now + job.time_limit_s
    return max(max(freed, now) + drain, now + MIN_WAIT_S)


def start_basis(job: JobRequest, site: SiteView) -> str:
    """Where :func:`estimate_start`'s answer comes from: ``slurm``, ``free`` or ``queue``."""
    if site.est_start_s is not None:
        return "slurm"
    if site.free_gpus >= job.gpus and site.queued_gpu_seconds <= 0:
        return "free"
    return "queue"


def preference_rank(job: JobRequest, site: str) -> int | None:
    """The position of the first of the job's preferences that names ``site`` (a factory, a
    system or the partition itself), ``None`` when none does."""
    for rank, wanted in enumerate(job.prefer):
        if site == wanted or site.startswith(wanted + "/"):
            return rank
    return None


def _split(job: JobRequest, sites: tuple[SiteView, ...]) -> tuple[list[SiteView], dict[str, str]]:
    ok: list[SiteView] = []
    rejected: dict[str, str] = {}
    for site in sites:
        reason = _constraint_reason(job, site)
        if reason is None:
            ok.append(site)
        else:
            rejected[site.name] = reason
    return ok, rejected


RankKey = Callable[[JobRequest, SiteView, float, float], tuple[float | str, ...]]


def _decide(
    job: JobRequest, candidates: list[SiteView], rejected: dict[str, str], now: float, key: RankKey
) -> Decision:
    starts = {s.name: estimate_start(job, s, now) for s in candidates}
    ordered = sorted(candidates, key=lambda s: key(job, s, starts[s.name], now))
    ranked = tuple(s.name for s in ordered)
    return Decision(
        chosen=ranked[0] if ranked else None,
        ranked=ranked,
        rejected=rejected,
        est_start_s={name: starts[name] for name in ranked},
    )


@dataclass(frozen=True)
class _RankingPolicy:
    name: str
    key: RankKey
    preferences: bool = False  # the project's preferred sites may win within the tolerance

    def place(self, job: JobRequest, sites: tuple[SiteView, ...], now: float) -> Decision:
        candidates, rejected = _split(job, sites)
        decision = _decide(job, candidates, rejected, now, self.key)
        if not self.preferences:
            return decision
        ranked = _prefer(job, decision.ranked, decision.est_start_s)
        return replace(decision, chosen=ranked[0] if ranked else None, ranked=ranked)


@dataclass(frozen=True)
class _HomePolicy:
    """Baseline: the job runs at its home site or nowhere."""

    name: str = "home"

    def place(self, job: JobRequest, sites: tuple[SiteView, ...], now: float) -> Decision:
        candidates, rejected = _split(job, sites)
        home = [s for s in candidates if s.name == job.home_site]
        for site in candidates:
            if site.name != job.home_site:
                rejected[site.name] = (
                    "not the job's home site"
                    if job.home_site is not None
                    else "job has no home site"
                )
        return _decide(job, home, rejected, now, _by_start_then_name)


def _broker_key(
    job: JobRequest, site: SiteView, start: float, now: float
) -> tuple[float | str, ...]:
    # Expected start first; then the cheaper partition; then the project's preference.
    rank = preference_rank(job, site.name)
    return (start, site.charge_factor, len(job.prefer) if rank is None else rank, site.name)


def _prefer(
    job: JobRequest, ranked: tuple[str, ...], starts: Mapping[str, float]
) -> tuple[str, ...]:
    """The project's most preferred site first when it starts at most ``PREFER_TOLERANCE_S``
    after the best one; otherwise the ranking as it is."""
    if not job.prefer or not ranked:
        return ranked
    latest = starts[ranked[0]] + PREFER_TOLERANCE_S
    near = [n for n in ranked if starts[n] <= latest and preference_rank(job, n) is not None]
    if not near:
        return ranked
    best = min(near, key=lambda n: (preference_rank(job, n), starts[n]))
    return (best, *(n for n in ranked if n != best))


def _by_start_then_name(
    job: JobRequest, site: SiteView, start: float, now: float
) -> tuple[float | str, ...]:
    return (start, site.name)


def _least_loaded_key(
    job: JobRequest, site: SiteView, start: float, now: float
) -> tuple[float | str, ...]:
    # Backlog per GPU first, then the busier fraction of the partition, then name.
    total = max(site.total_gpus, 1)
    return (site.queued_gpu_seconds / total, 1.0 - site.free_gpus / total, site.name)


PLACEMENT_POLICIES: dict[str, PlacementPolicy] = {
    "broker": _RankingPolicy("broker", _broker_key, preferences=True),
    "home": _HomePolicy(),
    "least-loaded": _RankingPolicy("least-loaded", _least_loaded_key),
    "earliest-start": _RankingPolicy("earliest-start", _by_start_then_name),
}


def get_placement_policy(name: str) -> PlacementPolicy:
    """Look a placement policy up by name.

    Raises:
        Invalid: When no policy has that name; the message lists the valid names.
    """
    try:
        return PLACEMENT_POLICIES[name]
    except KeyError:
        valid = ", ".join(sorted(PLACEMENT_POLICIES))
        raise Invalid.field(
            "placement", "unknown", f"unknown placement policy {name!r}; valid: {valid}"
        ) from None
