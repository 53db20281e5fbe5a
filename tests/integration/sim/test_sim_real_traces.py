"""Real traces from the shared data folder: the published EASY validation and every reader.

The shared folder is ``$AIF_SHARED_DIR`` or, by default, ``shared/`` beside the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aifactory.sim.cleaning import clean_swf
from aifactory.sim.gpu_traces import read_alibaba_nodes
from aifactory.sim.model import SiteSpec
from aifactory.sim.runner import load_trace, run_trace
from aifactory.sim.swf import read_swf


def _shared() -> Path:
    env = os.environ.get("AIF_SHARED_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[3].parent / "shared"


TRACES = _shared() / "data" / "traces"
pytestmark = pytest.mark.skipif(not TRACES.is_dir(), reason=f"no shared traces at {TRACES}")


def test_sdsc_sp2_easy_matches_the_published_pyss_results() -> None:
    trace = load_trace(TRACES / "swf" / "SDSC-SP2-1998-4.2-cln.swf.gz")
    assert len(trace.jobs) == 53_999
    overall = run_trace(trace, "easy").metrics["overall"]  # invariants are checked in the run
    assert overall["mean_bounded_slowdown"] == pytest.approx(87.87, rel=0.02)
    assert overall["mean_response_s"] == pytest.approx(27_850.9, rel=0.02)


def test_sdsc_par_header_with_text_gives_400_procs() -> None:
    log = read_swf(TRACES / "swf" / "SDSC-Par-1996-3.1-cln.swf.gz")
    assert log.max_procs == 400


def test_lublin_model_trace_uses_max_nodes_and_needs_runtime_estimates() -> None:
    log = read_swf(TRACES / "swf" / "lublin_256.swf.gz")
    assert log.max_procs == 256
    trace = clean_swf(log, estimate_from_runtime=True)
    assert len(trace.jobs) > 9_000
    assert run_trace(trace, "easy-sjbf").metrics["overall"]["jobs"] == len(trace.jobs)


def test_philly_extract_on_a_federation_of_three_sites() -> None:
    trace = load_trace(TRACES / "gpu" / "philly_jobs_pollux.csv.gz")
    assert len(trace.jobs) == 82_247
    trace.jobs = trace.jobs[:5_000]
    sites = [SiteSpec("a", 64, 8, "FI"), SiteSpec("b", 32, 8, "DE"), SiteSpec("c", 16, 4, "IT")]
    metrics = run_trace(trace, "easy", sites=sites, placement="broker").metrics
    assert metrics["overall"]["jobs"] == 5_000
    assert all(s["jobs"] > 0 for s in metrics["sites"])


@pytest.mark.parametrize("folder", ["pollux_workloads", "sia_helios_saturn_workloads"])
def test_pollux_and_sia_workloads(folder: str) -> None:
    trace = load_trace(TRACES / "gpu" / folder / "workload-1.csv", capacity=64)
    assert len(trace.jobs) == 160
    assert run_trace(trace, "conservative").metrics["overall"]["jobs"] == 160


def test_alibaba_pods_on_the_alibaba_nodes() -> None:
    trace = load_trace(TRACES / "gpu" / "alibaba_openb_pod_list_default.csv")
    sites = read_alibaba_nodes(TRACES / "gpu" / "alibaba_openb_node_list_gpu_node.csv")
    assert sum(s.capacity for s in sites) == 6_212
    metrics = run_trace(trace, "easy", sites=sites, placement="earliest-start").metrics
    assert metrics["overall"]["jobs"] == len(trace.jobs) == 6_203
