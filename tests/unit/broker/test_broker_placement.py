"""Placement policies: hard constraints with reasons, and each policy's ranking."""

from __future__ import annotations

from dataclasses import replace

import pytest

from aifactory.broker.placement import (
    PLACEMENT_POLICIES,
    JobRequest,
    SiteView,
    get_placement_policy,
)
from aifactory.errors import Invalid


def site(name: str, **kw: object) -> SiteView:
    base = SiteView(
        name=name, country="FI", operational=True, gpu_model="H100", gpu_memory_gb=80.0,
        gpus_per_node=4, nodes=10, free_gpus=40, total_gpus=40, queued_gpu_seconds=0.0,
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


REQ = JobRequest(nodes=2, gpus_per_node=4, time_limit_s=3600.0)


@pytest.mark.parametrize(
    ("view", "job", "reason"),
    [
        (site("a", operational=False), REQ, "site is not operational"),
        (site("a"), replace(REQ, gpus_per_node=8), "needs 8 GPUs per node, partition has 4"),
        (site("a"), replace(REQ, nodes=11), "needs 11 nodes, partition has 10"),
        (site("a"), replace(REQ, gpu_model="MI300X"), "needs GPU model MI300X, partition has H100"),
        (site("a"), replace(REQ, min_gpu_memory_gb=141),
         "needs 141 GB per GPU, partition has 80 GB"),
        (site("a"), replace(REQ, allowed_countries=frozenset({"DE", "IT"})),
         "country FI is not allowed (allowed: DE, IT)"),
        (site("a", budget_remaining_gpu_hours=7.0, charge_factor=1.0), REQ,
         "needs 8.0 GPU-hours of budget, 7.0 remain"),
    ],
)  # fmt: skip
def test_every_rejected_site_carries_its_reason(
    view: SiteView, job: JobRequest, reason: str
) -> None:
    for policy in PLACEMENT_POLICIES.values():
        decision = policy.place(job, (view,), 0.0)
        assert decision.chosen is None
        assert decision.rejected == {"a": reason}


def test_budget_counts_the_charge_factor() -> None:
    view = site("a", budget_remaining_gpu_hours=10.0, charge_factor=1.5)
    assert (
        "needs 12.0 GPU-hours" in PLACEMENT_POLICIES["broker"].place(REQ, (view,), 0).rejected["a"]
    )


def test_broker_ranks_by_start_then_charge_factor_then_name() -> None:
    sites = (
        site("busy", free_gpus=0, queued_gpu_seconds=40 * 3600.0),
        site("pricey", charge_factor=2.0),
        site("cheap-b", charge_factor=1.0),
        site("cheap-a", charge_factor=1.0),
    )
    decision = PLACEMENT_POLICIES["broker"].place(REQ, sites, 100.0)
    assert decision.ranked == ("cheap-a", "cheap-b", "pricey", "busy")
    assert decision.chosen == "cheap-a"
    assert decision.est_start_s["busy"] == 100.0 + 3600.0
    assert decision.est_start_s["cheap-a"] == 100.0


def test_a_site_supplied_start_estimate_wins_over_the_fluid_one() -> None:
    sites = (site("a", est_start_s=500.0), site("b", free_gpus=0, est_start_s=200.0))
    decision = PLACEMENT_POLICIES["earliest-start"].place(REQ, sites, 0.0)
    assert decision.ranked == ("b", "a")


def test_earliest_start_ignores_the_charge_factor() -> None:
    sites = (site("a", charge_factor=3.0), site("b", charge_factor=1.0))
    assert PLACEMENT_POLICIES["earliest-start"].place(REQ, sites, 0).chosen == "a"
    assert PLACEMENT_POLICIES["broker"].place(REQ, sites, 0).chosen == "b"


def test_least_loaded_picks_the_smallest_backlog_per_gpu() -> None:
    sites = (site("a", queued_gpu_seconds=100.0), site("b", queued_gpu_seconds=10.0, total_gpus=80))
    assert PLACEMENT_POLICIES["least-loaded"].place(REQ, sites, 0).chosen == "b"


def test_home_places_only_at_the_home_site() -> None:
    sites = (site("a"), site("b", free_gpus=0))
    decision = PLACEMENT_POLICIES["home"].place(replace(REQ, home_site="b"), sites, 0)
    assert decision.chosen == "b"
    assert decision.rejected == {"a": "not the job's home site"}
    homeless = PLACEMENT_POLICIES["home"].place(REQ, sites, 0)
    assert homeless.chosen is None and homeless.rejected["a"] == "job has no home site"


def test_unknown_policy_lists_valid_names() -> None:
    with pytest.raises(Invalid, match="broker, earliest-start, home, least-loaded"):
        get_placement_policy("random")
