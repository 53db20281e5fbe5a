"""Capacity planning's pure parts: changes to a snapshot, fitting a workload, history jobs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aifactory.errors import Invalid
from aifactory.sim.model import Job, Trace
from aifactory.sim.plan import Factory, apply_changes, parse_add_factory, parse_snapshot, sites_of
from aifactory.sim.plan_run import fit_workload, history_trace, offered_load

FEDERATION = Path(__file__).resolve().parents[3] / "src/aifactory/data/federation.yaml"


@pytest.fixture(scope="module")
def registry() -> list[Factory]:
    return parse_snapshot(yaml.safe_load(FEDERATION.read_text(encoding="utf-8")))


def _gpus(factories: list[Factory], name: str) -> dict[str, int]:
    f = next(f for f in factories if f.name == name)
    return {f"{p.system}/{p.name}": p.gpus for p in f.partitions}


def test_scale_reaches_a_factory_a_system_or_one_partition(registry: list[Factory]) -> None:
    bsc = _gpus(registry, "BSC AIF")
    assert bsc == {"MareNostrum 5 AI/llm-train": 256, "MareNostrum 5 AI/inference": 64}
    one, _ = apply_changes(registry, scales=["BSC AIF/MareNostrum 5 AI/inference=2"])
    assert _gpus(one, "BSC AIF") == {**bsc, "MareNostrum 5 AI/inference": 128}
    system, _ = apply_changes(registry, scales=["BSC AIF/MareNostrum 5 AI=0.5"])
    assert _gpus(system, "BSC AIF") == {k: v // 2 for k, v in bsc.items()}
    everything, changes = apply_changes(registry, scales=["*=2"])
    assert sum(f.gpus for f in everything) == 2 * sum(f.gpus for f in registry) == 5376
    assert [c.text for c in changes] == ["scale * x2"]


@pytest.mark.parametrize(
    ("text", "rule"),
    [("LUMI AIF", "PARTITION=FACTOR"), ("LUMI AIF=0", "PARTITION=FACTOR"),
     ("LUMI AIF=two", "PARTITION=FACTOR"), ("LUMI=2", "names no factory")],
)  # fmt: skip
def test_a_bad_scale_names_the_option_and_the_rule(
    registry: list[Factory],
    text: str,
    rule: str,
) -> None:
    with pytest.raises(Invalid) as caught:
        apply_changes(registry, scales=[text])
    assert caught.value.details[0].field == "--scale" and rule in caught.value.message


def test_added_and_removed_factories(registry: list[Factory]) -> None:
    nova = parse_add_factory("Nova:4096:4:PL")
    assert (nova.gpus, nova.partitions[0].nodes, nova.country) == (4096, 1024, "PL")
    after, _ = apply_changes(registry, added=[nova], removed=["Pharos"])
    names = [f.name for f in after]
    assert "Pharos" not in names and names[-1] == "Nova"
    sites, owner = sites_of(after)
    assert sites[-1].name == "Nova/Nova/gpu" and owner[-1] == len(after) - 1
    for bad in ("Nova", "Nova:12:8", "Nova:0", "Nova:8:8:Poland"):
        with pytest.raises(Invalid, match="--add-factory"):
            parse_add_factory(bad)
    with pytest.raises(Invalid, match="no factory 'Atlantis'"):
        apply_changes(registry, removed=["Atlantis"])


def test_arrivals_are_scaled_to_the_target_load_and_too_wide_jobs_left_out() -> None:
    jobs = [Job(i, 100 * i, 50, 60, 4) for i in range(1, 11)] + [Job(99, 2000, 10, 10, 64)]
    trace = Trace("t", jobs, 8, "procs")
    fitted = fit_workload(trace, "t", widest=32, capacity=40, load=0.5)
    assert fitted.dropped_too_wide == 1 and len(fitted.trace.jobs) == 10
    assert offered_load(fitted.trace.jobs, 40) == pytest.approx(0.5, rel=0.01)
    assert [j.run for j in fitted.trace.jobs] == [50] * 10  # sizes and run times stay
    own = fit_workload(trace, "t", widest=32, capacity=40)  # default: its load on 8 units
    assert own.load_target == pytest.approx(offered_load(jobs[:10], 8))
    kept = fit_workload(trace, "t", widest=32, capacity=40, keep_arrivals=True, max_jobs=3)
    assert [j.submit for j in kept.trace.jobs] == [0, 100, 200] and kept.cut_to == 3


def test_history_rows_become_trace_jobs_per_project() -> None:
    rows = [
        {"id": 7, "project": "B", "gpus": 8, "time_limit_s": 600,
         "submitted_at": "2026-01-01T00:01:00+00:00", "started_at": "2026-01-01T00:02:00+00:00",
         "ended_at": "2026-01-01T00:07:00+00:00"},
        {"id": 3, "project": "A", "gpus": 1, "time_limit_s": 60,
         "submitted_at": "2026-01-01T00:00:00+00:00", "started_at": "2026-01-01T00:00:00+00:00",
         "ended_at": "2026-01-01T00:02:00+00:00"},
    ]  # fmt: skip
    trace = history_trace(rows)
    got = [(j.id, j.submit, j.run, j.req, j.width, j.user) for j in trace.jobs]
    assert got == [(3, 0, 120, 120, 1, 0), (7, 60, 300, 600, 8, 1)]
