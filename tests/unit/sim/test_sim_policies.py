"""Hand-built traces whose FCFS / EASY / EASY-SJBF / conservative schedules are known."""

from __future__ import annotations

import pytest
from simhelpers import job, run_one, starts

from aifactory.errors import Invalid
from aifactory.sim.policies import make_policy


def blocked_head_trace() -> list:
    # capacity 10: J1 holds 6; J2 (6) must wait for J1; J3 (2, short) fits in the gap.
    return [job(1, 0, 6, 10), job(2, 0, 6, 10), job(3, 0, 2, 5)]


def test_fcfs_never_lets_a_later_job_pass_the_blocked_head() -> None:
    assert starts(run_one(blocked_head_trace(), 10, "fcfs")) == {1: 0, 2: 10, 3: 10}


def test_easy_backfills_a_short_job_that_ends_before_the_reservation() -> None:
    assert starts(run_one(blocked_head_trace(), 10, "easy")) == {1: 0, 2: 10, 3: 0}


def test_easy_refuses_a_long_job_that_would_take_units_the_head_needs() -> None:
    # Head J2 needs all 10 units at t=10: no spare units then, so only jobs ending by 10 fit.
    jobs = [job(1, 0, 8, 10), job(2, 0, 10, 10), job(3, 0, 2, 20), job(4, 0, 2, 10)]
    assert starts(run_one(jobs, 10, "easy")) == {1: 0, 2: 10, 3: 20, 4: 0}


def test_easy_lets_a_long_job_use_units_the_head_leaves_spare() -> None:
    jobs = [job(1, 0, 8, 10), job(2, 0, 4, 10), job(3, 0, 2, 100)]
    assert starts(run_one(jobs, 10, "easy")) == {1: 0, 2: 10, 3: 0}


def sjbf_trace() -> list:
    # Head J2 (10 units) reserved at 100; both 2-unit candidates are queued when J0 frees its
    # 2 units at t=5, and only one of them fits.
    return [
        job(0, 0, 2, 5), job(1, 0, 8, 100), job(2, 0, 10, 10), job(3, 1, 2, 90), job(4, 1, 2, 50),
    ]  # fmt: skip


def test_easy_backfills_candidates_in_arrival_order() -> None:
    s = starts(run_one(sjbf_trace(), 10, "easy"))
    assert (s[3], s[4]) == (5, 110)


def test_easy_sjbf_backfills_the_shortest_requested_job_first() -> None:
    s = starts(run_one(sjbf_trace(), 10, "easy-sjbf"))
    assert (s[3], s[4]) == (110, 5)


def easy_vs_conservative_trace() -> list:
    return [job(1, 0, 8, 10), job(2, 1, 6, 10), job(3, 1, 4, 10), job(4, 1, 2, 100)]


def test_easy_may_delay_the_second_queued_job() -> None:
    assert starts(run_one(easy_vs_conservative_trace(), 10, "easy")) == {
        1: 0, 2: 10, 3: 20, 4: 1,
    }  # fmt: skip


def test_conservative_backfilling_delays_no_queued_job() -> None:
    assert starts(run_one(easy_vs_conservative_trace(), 10, "conservative")) == {
        1: 0, 2: 10, 3: 10, 4: 20,
    }  # fmt: skip


def test_conservative_compresses_reservations_when_a_job_ends_early() -> None:
    jobs = easy_vs_conservative_trace()
    jobs[0].run = 5  # requested 10, ends at 5
    assert starts(run_one(jobs, 10, "conservative")) == {1: 0, 2: 5, 3: 5, 4: 15}


@pytest.mark.parametrize("policy", ["fcfs", "easy", "easy-sjbf", "conservative"])
def test_units_released_at_t_serve_a_job_arriving_at_t(policy: str) -> None:
    jobs = [job(1, 0, 4, 10), job(2, 10, 4, 10)]
    assert starts(run_one(jobs, 4, policy)) == {1: 0, 2: 10}


@pytest.mark.parametrize("policy", ["fcfs", "easy", "easy-sjbf", "conservative"])
def test_every_policy_finishes_every_job_of_a_busy_trace(policy: str) -> None:
    jobs = [
        job(i, i * 3, 1 + (i * 7) % 10, 20 + (i * 13) % 50, 5 + (i * 11) % 20) for i in range(200)
    ]
    result = run_one(jobs, 10, policy)
    assert all(j.end == j.start + j.run and j.start >= j.submit for j in result.jobs)


def test_unknown_policy_lists_the_valid_names() -> None:
    with pytest.raises(Invalid, match="easy-sjbf"):
        make_policy("sjf")
