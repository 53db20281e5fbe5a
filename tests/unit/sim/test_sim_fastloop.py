"""The fast path (sim/fastloop.py) decides exactly as the general engine and the policy classes,
and as the plain EASY loop the benchmark measures it against."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from simhelpers import job

from aifactory.errors import Invalid
from aifactory.sim.engine import make_sites, simulate
from aifactory.sim.model import Job, SiteSpec
from aifactory.sim.synthetic import WorkloadModel, generate

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from _easy_reference import easy_reference


def _run(jobs: list[Job], capacity: int, policy: str, fast: bool) -> tuple[list[int], ...]:
    site = make_sites([SiteSpec("m", capacity)], policy)
    result = simulate(jobs, site, fast=fast)
    s = result.sites[0]
    return [j.start for j in jobs], list(s.times), list(s.busy), list(s.queued)


@pytest.mark.parametrize("policy", ["fcfs", "easy", "easy-sjbf"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_path_gives_the_general_engines_starts_and_time_series(policy: str, seed: int) -> None:
    trace = generate(4000, WorkloadModel(machine=64, load=1.1), seed=seed)
    assert _run(trace.jobs, 64, policy, fast=True) == _run(trace.jobs, 64, policy, fast=False)


def test_fast_path_keeps_conventions_on_ties() -> None:
    # Equal submit and end times, zero-length jobs and a job as wide as the machine.
    jobs = [
        job(1, 0, 2, 10),
        job(2, 0, 3, 10, run=5),
        job(3, 5, 4, 20),
        job(4, 5, 1, 5, run=0),
        job(5, 10, 1, 3),
        job(6, 10, 2, 30),
        job(7, 10, 1, 100),
    ]
    for policy in ("fcfs", "easy", "easy-sjbf"):
        assert _run(jobs, 4, policy, fast=True) == _run(jobs, 4, policy, fast=False)


def test_plain_reference_loop_and_engine_agree() -> None:
    trace = generate(3000, WorkloadModel(machine=32, load=1.0), seed=7)
    rows = [(j.submit, j.run, j.req, j.width) for j in trace.jobs]
    starts, *_ = _run(trace.jobs, 32, "easy", fast=True)
    assert easy_reference(rows, 32) == starts


def test_fast_path_refuses_what_the_general_engine_refuses() -> None:
    unsorted = [job(1, 10, 1, 5), job(2, 0, 1, 5)]
    with pytest.raises(Invalid, match="sorted by submit time"):
        _run(unsorted, 2, "easy", fast=True)
