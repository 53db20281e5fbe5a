"""Site files (both layouts), federation routing, and GPU trace readers on small files."""

from __future__ import annotations

from pathlib import Path

import pytest
from simhelpers import job

from aifactory.errors import Invalid
from aifactory.sim.gpu_traces import read_alibaba_nodes, read_alibaba_pods, read_philly, read_pollux
from aifactory.sim.model import SiteSpec, Trace
from aifactory.sim.runner import detect_format, run_trace
from aifactory.sim.sites import load_sites, parse_sites

FEDERATION = {
    "factories": [
        {"name": "LUMI AIF", "country": "FI", "status": "operational", "systems": [
            {"name": "LUMI-AI", "partitions": [
                {"name": "gpu", "gpu_model": "MI300X", "nodes": 10, "gpus_per_node": 8,
                 "gpu_memory_gb": 192, "charge_factor": 1.0}]}]},
        {"name": "HammerHAI", "country": "DE", "status": "deploying", "systems": [
            {"name": "HAI", "partitions": [
                {"name": "ai", "gpu_model": "H200", "nodes": 4, "gpus_per_node": 4,
                 "gpu_memory_gb": 141, "charge_factor": 1.2}]}]},
    ]
}  # fmt: skip


def test_federation_yaml_partitions_become_sites() -> None:
    sites = parse_sites(FEDERATION)
    assert [(s.name, s.capacity, s.country, s.operational) for s in sites] == [
        ("LUMI AIF/LUMI-AI/gpu", 80, "FI", True),
        ("HammerHAI/HAI/ai", 16, "DE", False),
    ]
    assert all(s.operational for s in parse_sites(FEDERATION, assume_operational=True))


def test_simple_sites_accept_gpus_or_nodes_times_gpus() -> None:
    sites = parse_sites({"sites": [{"name": "a", "gpus": 8, "policy": "fcfs"},
                                   {"name": "b", "nodes": 2, "gpus_per_node": 4}]})  # fmt: skip
    assert [(s.capacity, s.policy) for s in sites] == [(8, "fcfs"), (8, None)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sites": [{"name": "a", "gpus": 0}]}, "zero capacity"),
        ({"sites": [{"name": "a", "gpus": 4, "policy": "lifo"}]}, "sites\\[0\\].policy"),
        ({"sites": [{"name": "a", "gpus": 4}, {"name": "a", "gpus": 4}]}, "duplicate"),
        ({"sites": [{"name": "a", "gpus": "many"}]}, "sites\\[0\\].gpus"),
        ({"clusters": []}, "'sites:' or 'factories:'"),
    ],
)
def test_bad_site_lists_are_rejected_with_the_offending_entry(data: object, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        parse_sites(data)


def test_sites_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("sites:\n  - name: a\n    gpus: 0\n")
    with pytest.raises(Invalid, match=r"s\.yaml: site 'a' has zero capacity"):
        load_sites(path)
    path.write_text("sites: [\n")
    with pytest.raises(Invalid, match=r"s\.yaml:\d+: invalid YAML"):
        load_sites(path)


def two_sites() -> list[SiteSpec]:
    return [SiteSpec("a", 2, 4, "FI"), SiteSpec("b", 4, 4, "DE")]


def test_broker_placement_spreads_jobs_to_the_site_that_can_start_them() -> None:
    jobs = [job(1, 0, 8, 100), job(2, 0, 8, 100), job(3, 0, 8, 100)]
    trace = Trace("t", jobs, None, "gpus")
    outcome = run_trace(trace, "easy", sites=two_sites(), placement="broker")
    assert [(j.site, j.start) for j in outcome.result.jobs] == [(0, 0), (1, 0), (1, 0)]
    assert [s["jobs"] for s in outcome.metrics["sites"]] == [1, 2]


def test_home_placement_keeps_jobs_home_even_when_it_is_busy() -> None:
    jobs = [job(1, 0, 8, 100), job(2, 0, 8, 100)]
    for j in jobs:
        j.user = 0  # both belong to site 0
    outcome = run_trace(Trace("t", jobs, None, "gpus"), "easy", sites=two_sites(), placement="home")
    assert [(j.site, j.start) for j in outcome.result.jobs] == [(0, 0), (0, 100)]


def test_jobs_no_site_accepts_are_counted_with_a_reason() -> None:
    sites = [SiteSpec("a", 2, 4, "FI"), SiteSpec("b", 8, 1, "DE")]  # node size 1: 8 nodes needed
    jobs = [job(1, 0, 8, 10)]
    jobs[0].user = 0
    outcome = run_trace(Trace("t", jobs, None, "gpus"), "easy", sites=sites, placement="home")
    assert outcome.metrics["rejected_reasons"] == {"needs N nodes, partition has N": 1}


def test_a_job_wider_than_every_site_names_its_line() -> None:
    wide = job(7, 0, 64, 10)
    wide.line = 12
    with pytest.raises(Invalid, match=r"t:12: job 7 needs 64 units"):
        run_trace(Trace("t", [wide], None, "gpus"), "easy", sites=two_sites())


def test_gpu_trace_without_capacity_asks_for_it() -> None:
    with pytest.raises(Invalid, match="--capacity or --sites"):
        run_trace(Trace("t", [job(1, 0, 1, 1)], None, "gpus"), "easy")


def test_philly_reader(tmp_path: Path) -> None:
    path = tmp_path / "philly.csv"
    path.write_text(
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:01:55,66.0,2,132.0,vcA\n"
        "2017-10-09 07:00:00,30.0,1,30.0,vcB\n"
        "2017-10-09 07:05:00,0.0,1,0.0,vcA\n"
    )
    trace = read_philly(path)
    assert detect_format(path) == "philly"
    assert [(j.submit, j.run, j.req, j.width, j.user) for j in trace.jobs] == [
        (0, 30, 30, 1, 1), (115, 66, 66, 2, 0),
    ]  # fmt: skip
    assert trace.dropped == {"no_runtime": 1}


def test_philly_bad_timestamp_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\nyesterday,1,1,1,a\n")
    with pytest.raises(Invalid, match=r"p\.csv:2: malformed row"):
        read_philly(path)


def test_pollux_reader_derives_run_time_from_gpu_hours(tmp_path: Path) -> None:
    path = tmp_path / "workload-1.csv"
    path.write_text("name,time,application,num_replicas,batch_size\nbert-0,10,bert,4,12\n")
    (j,) = read_pollux(path).jobs
    assert (j.submit, j.width, j.run) == (0, 4, 5 * 3600 // 4)
    path.write_text("name,time,application,num_replicas,batch_size\nx-0,10,gpt5,4,12\n")
    with pytest.raises(Invalid, match="unknown application 'gpt5'"):
        read_pollux(path)


def test_alibaba_pods_keep_scheduled_gpu_pods(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,"
        "deletion_time,scheduled_time\n"
        "p0,1000,100,1,500,,LS,Running,100,500,120\n"
        "p1,1000,100,0,0,,LS,Running,100,500,100\n"
        "p2,1000,100,2,1000,,BE,Pending,130,150,\n"
    )
    trace = read_alibaba_pods(path)
    assert [(j.submit, j.run, j.width) for j in trace.jobs] == [(0, 380, 1)]
    assert trace.dropped == {"cpu_only": 1, "never_scheduled": 1}


def test_alibaba_nodes_group_into_sites(tmp_path: Path) -> None:
    path = tmp_path / "nodes.csv"
    path.write_text("sn,cpu_milli,memory_mib,gpu,model\nn0,1,1,8,V100\nn1,1,1,8,V100\nn2,1,1,0,\n")
    assert [(s.name, s.nodes, s.units_per_node) for s in read_alibaba_nodes(path)] == [
        ("V100-x8", 2, 8)
    ]
