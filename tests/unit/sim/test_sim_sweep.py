"""What-if sweeps: parallel and serial runs agree; CLI sweep writes its table and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sim_cli import runner, swf

from aifactory.cli.sim import app
from aifactory.errors import Invalid
from aifactory.sim.runner import run_trace
from aifactory.sim.sweep import Scenario, run_scenarios
from aifactory.sim.synthetic import WorkloadModel, generate

SCENARIOS = [
    Scenario(f"{p}-{c}-{x}", p, c, x)
    for p in ("easy", "fcfs")
    for c in (64, 96)
    for x in (1.0, 1.3)
]


def test_two_processes_give_the_serial_results_in_scenario_order() -> None:
    trace = generate(2000, WorkloadModel(machine=64, load=0.9), seed=5)
    serial = run_scenarios(trace, SCENARIOS, workers=1)
    parallel = run_scenarios(trace, SCENARIOS, workers=2)
    assert [r.scenario for r in parallel] == SCENARIOS
    assert [r.metrics for r in parallel] == [r.metrics for r in serial]
    assert all((a.waits == b.waits).all() for a, b in zip(serial, parallel, strict=True))


def test_a_scenario_equals_a_plain_run_and_leaves_the_trace_alone() -> None:
    trace = generate(1000, WorkloadModel(machine=64, load=0.9), seed=6)
    before = [(j.submit, j.start) for j in trace.jobs]
    (result,) = run_scenarios(trace, [Scenario("x", "easy", 96)], workers=1)
    assert [(j.submit, j.start) for j in trace.jobs] == before
    trace.capacity = 96
    plain = run_trace(trace, "easy").metrics["overall"]
    assert result.metrics["overall"] == plain


def test_load_factor_compresses_arrivals() -> None:
    trace = generate(1000, WorkloadModel(machine=64, load=0.9), seed=6)
    low, high = run_scenarios(trace, [Scenario("a", load=1.0), Scenario("b", load=2.0)])
    assert high.metrics["overall"]["makespan_s"] < low.metrics["overall"]["makespan_s"]
    assert high.metrics["overall"]["mean_wait_s"] > low.metrics["overall"]["mean_wait_s"]


def test_duplicate_scenario_names_are_refused() -> None:
    trace = generate(10, WorkloadModel(machine=8), seed=1)
    with pytest.raises(Invalid, match="unique"):
        run_scenarios(trace, [Scenario("a"), Scenario("a")])


def test_cli_sweep_runs_every_combination(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    args = ["sweep", "--trace", str(swf(tmp_path)), "--policy", "fcfs", "--policy", "easy",
            "--capacity", "4", "--capacity", "8", "--load", "1", "--load", "1.5",
            "--workers", "2", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    names = set(json.loads((out / "sweep.json").read_text()))
    assert len(names) == 8
    assert "easy cap=8 load=1.5" in names
    assert (out / "sweep.png").stat().st_size > 0


def test_cli_sweep_with_an_unknown_policy_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sweep", "--trace", str(swf(tmp_path)), "--policy", "lifo"])
    assert result.exit_code == 2
    assert "unknown scheduling policy 'lifo'" in result.output
