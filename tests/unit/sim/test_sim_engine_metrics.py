"""Engine conventions, invariant checks, metrics and the synthetic generator."""

from __future__ import annotations

import itertools

import pytest
from simhelpers import job, run_one

from aifactory.errors import Invalid
from aifactory.sim.checks import check_invariants
from aifactory.sim.engine import make_sites, simulate
from aifactory.sim.machine import InvariantViolation
from aifactory.sim.metrics import binned_series, compute_metrics
from aifactory.sim.model import SiteSpec
from aifactory.sim.synthetic import WorkloadModel, generate


def test_runs_are_deterministic() -> None:
    trace = generate(3000, WorkloadModel(machine=64, load=0.9), seed=3)
    first = [(j.start, j.end) for j in run_one(trace.jobs, 64, "easy").jobs]
    second = [(j.start, j.end) for j in run_one(trace.jobs, 64, "easy").jobs]
    assert first == second


def test_progress_reports_every_job_finished_at_the_end() -> None:
    calls: list[tuple[int, int]] = []
    jobs = [job(i, i, 1, 5) for i in range(10)]
    simulate(
        jobs, make_sites([SiteSpec("m", 2)], "easy"), progress=lambda d, t: calls.append((d, t))
    )
    assert calls[-1] == (10, 10)


def test_jobs_with_run_beyond_their_estimate_are_refused() -> None:
    bad = job(1, 0, 1, 10)
    bad.run = 11
    with pytest.raises(Invalid, match="job 1"):
        run_one([bad], 2, "easy")


def test_invariant_check_catches_a_start_before_submit() -> None:
    result = run_one([job(1, 5, 1, 10)], 2, "fcfs")
    result.jobs[0].start, result.jobs[0].end = 4, 14
    with pytest.raises(InvariantViolation, match="before it was submitted"):
        check_invariants(result)


def test_invariant_check_catches_over_capacity() -> None:
    result = run_one([job(1, 0, 2, 10), job(2, 0, 2, 10)], 2, "fcfs")
    result.jobs[1].start, result.jobs[1].end = 5, 15
    with pytest.raises(InvariantViolation, match="over capacity"):
        check_invariants(result)


def test_invariant_check_catches_an_unfinished_job() -> None:
    result = run_one([job(1, 0, 1, 10)], 2, "fcfs")
    result.jobs[0].end = -1
    with pytest.raises(InvariantViolation, match="did not finish"):
        check_invariants(result)


def test_metrics_of_a_hand_computed_run() -> None:
    # capacity 2: J1 runs 0-100 on 2 units, J2 (submitted 0, run 5) waits 100.
    result = run_one([job(1, 0, 2, 100), job(2, 0, 1, 5)], 2, "fcfs")
    overall = compute_metrics(result)["overall"]
    assert overall["mean_wait_s"] == 50.0
    assert overall["mean_response_s"] == (100 + 105) / 2
    # bounded slowdown: J1 max(1, 100/100) = 1; J2 (100 + 5) / max(5, 10) = 10.5
    assert overall["mean_bounded_slowdown"] == pytest.approx((1 + 10.5) / 2)
    assert overall["makespan_s"] == 105
    assert overall["utilization"] == pytest.approx((200 + 5) / (2 * 105))
    assert overall["mean_queue_length"] == pytest.approx(100 / 105)


def test_binned_series_are_time_weighted() -> None:
    result = run_one([job(1, 0, 2, 100), job(2, 100, 1, 100)], 2, "fcfs")
    series = binned_series(result.sites[0], 0, 200, bins=2)
    assert series["utilization"].tolist() == pytest.approx([1.0, 0.5])


def test_synthetic_workload_is_reproducible_and_hits_its_load() -> None:
    model = WorkloadModel(machine=128, load=0.6)
    a, b = generate(20000, model, seed=7), generate(20000, model, seed=7)
    assert [(j.submit, j.width, j.run) for j in a.jobs] == [
        (j.submit, j.width, j.run) for j in b.jobs
    ]
    jobs = a.jobs
    assert all(1 <= j.width <= 128 and 1 <= j.run <= j.req for j in jobs)
    assert all(x.submit <= y.submit for x, y in itertools.pairwise(jobs))
    span = jobs[-1].submit - jobs[0].submit
    load = sum(j.width * j.run for j in jobs) / (128 * span)
    assert load == pytest.approx(0.6, rel=0.05)
    assert sum(j.width == 1 for j in jobs) / len(jobs) == pytest.approx(0.24, abs=0.03)
