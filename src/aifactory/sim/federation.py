"""Federation mode: route each arriving job to a site through a broker placement policy.

The simulator shows the policy exactly what the live broker would see: a :class:`SiteView` per
site (free GPUs now, requested work queued, a start estimate from the site's scheduler, the
budget left) and a :class:`JobRequest` for the job. A trace job of width ``w`` asks for
``g = min(w, smallest node size in the federation)`` units per node on ``ceil(w / g)`` nodes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from aifactory.broker.placement import JobRequest, PlacementPolicy, SiteView
from aifactory.errors import Invalid
from aifactory.sim.engine import SiteRun
from aifactory.sim.model import Job, SiteSpec

__all__ = ["FederationRouter", "assign_homes", "check_fits"]

_DIGITS = re.compile(r"\d+(\.\d+)?")


def assign_homes(jobs: list[Job], n_sites: int) -> None:
    """Give each job a home site: its user (or, unknown, its job id) modulo the site count."""
    for job in jobs:
        key = job.user if job.user >= 0 else job.id
        job.home = key % n_sites


def check_fits(jobs: list[Job], specs: Sequence[SiteSpec], source: str) -> None:
    """Fail early, naming the job and its trace line, when a job is wider than every site."""
    largest = max((s.capacity for s in specs if s.operational), default=0)
    if largest <= 0:
        raise Invalid("no operational site has any capacity (see --assume-operational)")
    for job in jobs:
        if job.width > largest:
            raise Invalid(
                f"{source}:{job.line}: job {job.id} needs {job.width} units, "
                f"the largest operational site has {largest}"
            )


class FederationRouter:
    """Turns engine state into placement-policy input and the decision into a site index."""

    def __init__(self, policy: PlacementPolicy, specs: Sequence[SiteSpec]) -> None:
        self.policy = policy
        self.index = {spec.name: i for i, spec in enumerate(specs)}
        self.names = [spec.name for spec in specs]
        self.node_size = min(spec.units_per_node for spec in specs)

    def request(self, job: Job) -> JobRequest:
        per_node = min(job.width, self.node_size)
        nodes = -(-job.width // per_node)
        home = self.names[job.home] if job.home >= 0 else None
        return JobRequest(nodes, per_node, float(job.req), home_site=home)

    @staticmethod
    def view(site: SiteRun, width: int, now: int) -> SiteView:
        spec, m = site.spec, site.machine
        return SiteView(
            spec.name, spec.country, spec.operational, spec.gpu_model, spec.gpu_memory_gb,
            spec.units_per_node, spec.nodes, m.free, m.capacity, float(m.queued_work),
            spec.charge_factor, site.budget_left, float(m.estimate_start(width, now)),
        )  # fmt: skip

    def __call__(self, job: Job, sites: Sequence[SiteRun], now: int) -> int | str:
        request = self.request(job)
        views = tuple(self.view(site, job.width, now) for site in sites)
        decision = self.policy.place(request, views, float(now))
        if decision.chosen is None:
            home = request.home_site
            reason = decision.rejected.get(home) if home else None
            if reason is None and decision.rejected:
                reason = decision.rejected[min(decision.rejected)]
            return _DIGITS.sub("N", reason or "no site accepted the job")
        index = self.index[decision.chosen]
        site = sites[index]
        if site.budget_left is not None:
            site.budget_left -= job.width * job.req / 3600.0 * site.spec.charge_factor
        return index
