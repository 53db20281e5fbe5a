"""Central admission (the default for federation runs), event conventions, perfect estimates
and budgets charged by the hours used."""

from __future__ import annotations

import pytest
from simhelpers import job

from aifactory.errors import Invalid
from aifactory.sim.engine import make_sites, simulate
from aifactory.sim.model import Job, SiteSpec, Trace
from aifactory.sim.runner import perfect_estimates, run_trace


def _two_ends_at_once() -> list[Job]:
    # A and B end at 10 though they asked for 20; X (all 4 units) is next in line for 20;
    # Y (2 units, 5 s) fits before 20 only if the scheduler runs between the two releases.
    return [job(1, 0, 2, 20, 10), job(2, 0, 2, 20, 10), job(3, 1, 4, 5), job(4, 2, 2, 5)]


@pytest.mark.parametrize(("schedule", "x", "y"), [("event", 15, 10), ("timestamp", 10, 15)])
def test_the_scheduling_point_decides_who_takes_a_partial_release(
    schedule: str, x: int, y: int
) -> None:
    jobs = _two_ends_at_once()
    simulate(jobs, make_sites([SiteSpec("m", 4)], "easy"), schedule=schedule)
    assert (jobs[2].start, jobs[3].start) == (x, y)
    central = run_trace(Trace("t", _two_ends_at_once(), None), "easy",
                        sites=[SiteSpec("m", 1, 4)], schedule=schedule).result.jobs  # fmt: skip
    assert (central[2].start, central[3].start) == (x, y)


def test_arrivals_first_lets_a_job_arriving_at_an_end_see_the_machine_still_busy() -> None:
    # At 10 A ends and W (2 units, long) arrives while X (4 units) waits for 10: arrivals
    # first, W is decided while A still holds its units, so it cannot take X's turn either way;
    # both conventions give X the machine at 10 and the run is deterministic.
    for events in ("completions-first", "arrivals-first"):
        jobs = [job(1, 0, 4, 10), job(2, 1, 4, 10), job(3, 10, 2, 100)]
        simulate(jobs, make_sites([SiteSpec("m", 4)], "easy"), events=events)
        assert [j.start for j in jobs] == [0, 10, 20]


@pytest.mark.parametrize(
    ("option", "value"), [("events", "random"), ("schedule", "hourly"), ("federation", "mesh")]
)
def test_unknown_conventions_are_refused_naming_the_option(option: str, value: str) -> None:
    trace = Trace("t", [job(1, 0, 1, 10)], None)
    with pytest.raises(Invalid, match=value) as caught:
        run_trace(trace, "easy", sites=[SiteSpec("m", 1, 4)], **{option: value})
    assert caught.value.details[0].field == option


def test_perfect_estimates_use_the_run_time() -> None:
    trace = perfect_estimates(Trace("t", [job(1, 0, 1, 100, 30)], None))
    assert trace.jobs[0].req == 30


def test_budgets_are_charged_by_the_hours_used_in_both_federation_modes() -> None:
    # 4 GPU-hours of budget: the first job reserves 4 (1 GPU x 4 h) but uses 1; the second,
    # asking for 3, fits once the first has ended only if the unused 3 came back.
    for federation in ("central", "route"):
        jobs = [job(1, 0, 1, 4 * 3600, 3600), job(2, 2 * 3600, 1, 3 * 3600)]
        site = SiteSpec("m", 1, 4, budget_gpu_hours=4.0)
        outcome = run_trace(Trace("t", jobs, None), "easy", sites=[site], federation=federation)
        assert [j.start for j in jobs] == [0, 2 * 3600], federation
        assert outcome.result.sites[0].budget_left == pytest.approx(0.0), federation


def test_central_admission_waits_centrally_and_takes_projects_in_turn() -> None:
    # One site of 4 units: user 0's two jobs hold it until 10, two more of user 0 and one of
    # user 1 wait. At 10 two jobs fit: the live broker's fair order takes one of each project
    # (user 1's job before user 0's second); site queues run them in arrival order.
    def jobs() -> list[Job]:
        rows = ((0, 0), (0, 0), (1, 0), (1, 0), (2, 1))  # (submit, user)
        return [Job(i, t, 10, 10, 2, user=u) for i, (t, u) in enumerate(rows)]

    central = jobs()
    outcome = run_trace(Trace("t", central, None), "easy", sites=[SiteSpec("m", 1, 4)],
                        schedule="timestamp")  # fmt: skip
    assert [j.start for j in central] == [0, 0, 10, 20, 10]
    assert outcome.metrics["federation"] == "central"
    assert outcome.metrics["overall"]["max_queue_length"] == 3
    routed = jobs()
    run_trace(Trace("t", routed, None), "easy", sites=[SiteSpec("m", 1, 4)], federation="route",
              schedule="timestamp")  # fmt: skip
    assert [j.start for j in routed] == [0, 0, 10, 10, 20]
