"""Part of the batch-script corpus on the real test clusters: import, render, sbatch, and read
back what slurmctld recorded (``scontrol show job -o``) against sbatch's documented meaning.

Each script goes the platform's way: ``import_sbatch`` -> ``JobSpec`` -> ``ExecJob`` (the site
agent's own mapping) -> ``SlurmExecutor.submit`` (the renderer). Only the script body is
swapped for a short sleep, so nothing of the fixture's training command runs; every job is
cancelled at the end. Other tests share the clusters: only requested values are compared, so a
job may be pending or running.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurmreal import new_id, settings

from aifactory.domain.jobspec import parse_spec
from aifactory.executors.base import ExecJob
from aifactory.executors.from_spec import exec_resources
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.accounts import SiteAccounts
from aifactory.executors.slurm.sbatch_import import import_sbatch
from aifactory.executors.slurm.transport import LocalTransport

CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "sbatch"
PROJECT = "aif-sbatch-corpus"
BODY = "#!/bin/bash\nsleep 30\n"

# fixture -> (cluster, what scontrol must show). Values as Slurm prints them: times rounded
# up to whole minutes, as sbatch itself rounds them.
CASES: dict[str, tuple[str, dict[str, str]]] = {
    "13_array_throttle": (
        "f1",
        {
            "NumNodes": "1",
            "NumTasks": "1",
            "gpus": "1",
            "TimeLimit": "00:45:00",
            "ArrayTaskId": "0",
        },
    ),
    "17_gpus_per_task_nodes": (
        "f1",
        {"NumNodes": "2", "NumTasks": "8", "gpus": "8", "TimeLimit": "00:30:00"},
    ),
    "45_gpus_per_task_small": (
        "f1",
        {"NumNodes": "2", "NumTasks": "2", "gpus": "8", "TimeLimit": "00:20:00"},
    ),
    "19_time_min_sec": ("f1", {"TimeLimit": "01:31:00", "TimeMin": "01:00:00", "gpus": "1"}),
    "20_time_days_hours": ("f1", {"TimeLimit": "1-12:00:00", "gpus": "2"}),
    "21_time_days_hm": ("f1", {"TimeLimit": "2-06:30:00", "TimeMin": "1-00:00:00"}),
    "34_exclusive_user": ("f1", {"NumNodes": "2", "OverSubscribe": "NO", "gpus": "8"}),
    "36_mem_units": ("f1", {"MinMemoryNode": "2G", "gpus": "1"}),
    "15_gres_typed": (
        "f2",
        {
            "NumNodes": "1",
            "NumTasks": "4",
            "gpus": "4",
            "TRES gres/gpu": "4",
            "gpu_type": "h100",
            "MinMemoryNode": "4G",
        },
    ),
    "44_gpus_per_node_typed_f2": (
        "f2",
        {
            "NumNodes": "2",
            "NumTasks": "4",
            "CPUs/Task": "2",
            "gpus": "16",
            "TRES gres/gpu": "16",
            "gpu_type": "h100",
            "OverSubscribe": "NO",
            "TimeLimit": "00:10:00",
        },
    ),
}


@pytest.fixture(scope="module")
def submitted(harness: dict[str, str]) -> Iterator[dict[str, dict[str, str]]]:
    """Every case submitted once; ``scontrol show job`` fields per fixture; all cancelled."""
    SiteAccounts(LocalTransport(harness["FACTORY2_CONF"])).ensure_account(PROJECT, 10**6, ["root"])
    executors = {
        "f1": SlurmExecutor(**settings(harness, "f1-local")),
        "f2": SlurmExecutor(**settings(harness, "f2-local")),
    }
    confs = {"f1": harness["FACTORY1_CONF"], "f2": harness["FACTORY2_CONF"]}
    ids: list[tuple[str, str]] = []
    shown: dict[str, dict[str, str]] = {}
    try:
        for name, (cluster, _) in CASES.items():
            bid = executors[cluster].submit(_exec_job(name))
            ids.append((cluster, bid))
            shown[name] = _show(confs[cluster], bid) | {"_cluster": cluster}
        yield shown
    finally:
        for cluster, bid in ids:
            executors[cluster].cancel(bid)


def _exec_job(fixture: str) -> ExecJob:
    spec_data, _ = import_sbatch((CORPUS / f"{fixture}.sbatch").read_text(), fixture)
    spec = parse_spec({**spec_data, "project": PROJECT})
    indices, _ = spec.tasks()
    return ExecJob(
        job_id=new_id(),
        script=BODY,
        time_limit_s=float(spec.resources.time_limit),
        project=PROJECT,
        array_task=indices[0] if indices else None,
        **exec_resources(spec),
    )


def _show(conf: str, backend_id: str) -> dict[str, str]:
    result = LocalTransport(conf).run(["scontrol", "show", "job", "-o", backend_id])
    assert result.returncode == 0, result.stderr
    fields = dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", result.stdout))
    per_node = re.search(r"gpu(?::(\w+))?:(\d+)", fields.get("TresPerNode", ""))
    nodes = fields["NumNodes"].split("-")[0]
    fields["NumNodes"] = nodes
    fields["gpus"] = str(int(per_node.group(2)) * int(nodes)) if per_node else "0"
    fields["gpu_type"] = (per_node.group(1) or "") if per_node else ""
    # factory2 accounts GPUs (AccountingStorageTRES=gres/gpu), so its TRES string has them.
    tres = re.search(r"gres/gpu=(\d+)", fields.get("TRES", ""))
    fields["TRES gres/gpu"] = tres.group(1) if tres else ""
    return fields


@pytest.mark.parametrize("fixture", list(CASES))
def test_slurm_records_what_sbatch_would_for_the_script(
    fixture: str, submitted: dict[str, dict[str, str]]
) -> None:
    shown = submitted[fixture]
    expected = CASES[fixture][1] | {"Partition": "debug", "Account": PROJECT}
    got = {key: shown.get(key) for key in expected}
    print(f"{fixture} on {shown['_cluster']}: {got}")
    assert got == expected
