"""The broker's admission core (pure): what the live broker and the simulator both call."""

from __future__ import annotations

from dataclasses import dataclass

from aifactory.broker.admission import Admission, Pending, Pool, Spec
from aifactory.broker.placement import JobRequest, SiteView, get_placement_policy
from aifactory.domain.jobs import JobState


@dataclass(frozen=True)
class Site:
    view: SiteView
    allocation_id: int
    pool: str
    charge_factor: float = 1.0
    site_down: bool = False
    held_gpu_hours: float = 0.0


def _site(name: str, gpus: int, budget: float | None = None) -> Site:
    view = SiteView(name, "FI", True, None, None, gpus, 1, gpus, gpus, 0.0,
                    budget_remaining_gpu_hours=budget)  # fmt: skip
    return Site(view, 1, name)


def _job(job_id: int, gpus: int, hours: float, project: str = "p") -> Pending:
    return Pending(job_id, project, Spec(JobRequest(1, gpus, hours * 3600)))


def _admit(pools: dict[str, Pool], sites: list[Site], jobs: list[Pending]) -> Admission[Site]:
    return Admission(get_placement_policy("broker"), 0.0, {"p": sites}, pools, {})


def test_a_job_started_in_the_pass_counts_in_the_next_reservation() -> None:
    # 8 GPUs idle: a 6-GPU hour starts; an 8-GPU job is next in line at its end (1 h), so a
    # 2-GPU job for 3 h may not take the last 2 GPUs (it would delay it).
    site = _site("a", 8)
    pools = {"a": Pool(8, [])}
    jobs = [_job(1, 6, 1), _job(2, 8, 1), _job(3, 2, 3)]
    decided = _admit(pools, [site], jobs).decide(jobs)
    assert [p.job for p in decided.place] == [1]
    assert pools["a"].head == 2 and pools["a"].reservation is not None
    assert pools["a"].reservation.start == 3600
    assert [w.reason for w in decided.waits] == [
        "next in line for 8 GPUs at a",
        "waiting for 2 GPUs at a, behind job 2, next in line there",
    ]


def test_a_job_no_budget_could_ever_cover_ends_as_failed() -> None:
    site = _site("a", 8, budget=1.0)
    jobs = [_job(1, 4, 1)]  # 4 GPU-hours asked, 1 in all
    decided = _admit({"a": Pool(8, [])}, [site], jobs).decide(jobs)
    (end,) = decided.end
    assert end.state == JobState.FAILED and "can never run as asked" in end.reason
    assert end.rejected == {"a": "needs 4.0 GPU-hours of budget, 1.0 remain"}


def test_until_full_stops_once_no_pool_has_a_free_gpu() -> None:
    jobs = [_job(1, 8, 1), _job(2, 8, 1)]
    pools = {"a": Pool(8, [])}
    decided = Admission(get_placement_policy("broker"), 0.0, {"p": [_site("a", 8)]}, pools, {},
                        until_full=True).decide(jobs)  # fmt: skip
    assert [p.job for p in decided.place] == [1] and not decided.waits
