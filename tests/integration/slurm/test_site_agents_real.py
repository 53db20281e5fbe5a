"""Site agents on two real Slurm clusters: the control plane places, runs, charges, recovers.

LUMI AIF is backed by cluster factory1 (4 nodes x 4 GPUs, no accounting) and MIMER by factory2
(2 nodes x 8 h100 GPUs, slurmdbd with enforced associations and GrpTRESMins accounts).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import HARNESS
from unix_users import map_login

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.domain.enums import Role
from aifactory.domain.ledger import usage_milli
from aifactory.executors.slurm.accounts import SiteAccounts
from aifactory.executors.slurm.transport import LocalTransport
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import run_until, spec
from aifactory.testing.people import make_person

API = "/api/v1"


def _sites(h: dict[str, str]) -> dict[str, Any]:
    common = {"job_root": h["JOB_ROOT"], "command_timeout_s": 30.0, "partitions": {"gpu": "debug"}}
    return {
        "sites": [
            {
                "factory": "LUMI AIF",
                "executor": "slurm",
                "options": {
                    **common,
                    "cluster": "factory1",
                    "slurm_conf": h["FACTORY1_CONF"],
                    "accounting": False,
                },
            },
            {
                "factory": "MIMER",
                "executor": "slurm",
                "options": {
                    **common,
                    "cluster": "factory2",
                    "slurm_conf": h["FACTORY2_CONF"],
                    "gpu_type": "h100",
                    "gpu_request": "gres",
                },
            },
        ]
    }


@pytest.fixture
def fed(harness: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(_sites(harness)))
    settings = Settings(data_dir=tmp_path / "data", sites_file=sites)
    db = prepare(settings)
    with db.session() as s:  # the registry describes the real test clusters
        registry.update_partition(
            s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4, "gpu_model": "GPU"}
        )
        registry.update_partition(
            s, "MIMER", "MIMER", "gpu", {"nodes": 2, "gpus_per_node": 8, "gpu_model": "H100"}
        )
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        for factory in ("LUMI AIF", "MIMER"):  # her jobs run as her own login at both sites
            map_login(db, "anna", factory, "aif-anna")
        lumi_op = make_person(db, "op1", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        mimer_op = make_person(db, "op2", [(Role.FACTORY_OPERATOR, "MIMER")])
        lumi, _ = award(api, anna, lumi_op, hours=100)
        mimer, _ = award(api, anna, mimer_op, call="mimer-pg", partition="MIMER/gpu", hours=100)
        yield {
            "api": api,
            "anna": anna,
            "lumi": lumi,
            "mimer": mimer,
            "db": db,
            "runner": AgentRunner(settings, db),
            "harness": harness,
        }
    db.dispose()


def _get(fed: dict[str, Any], job_id: int) -> dict[str, Any]:
    return ok(fed["api"].get(f"{API}/jobs/{job_id}", headers=fed["anna"].headers))  # type: ignore[no-any-return]


def _submit(fed: dict[str, Any], body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    return ok(fed["api"].post(f"{API}/jobs", headers=fed["anna"].headers, json=body), status)  # type: ignore[no-any-return]


def _until(fed: dict[str, Any], job_id: int, *states: str, timeout: float = 60) -> dict[str, Any]:
    run_until(
        fed["runner"], lambda: _get(fed, job_id)["state"] in states, timeout=timeout, step=0.3
    )
    return _get(fed, job_id)


def test_jobs_run_on_both_clusters_and_usage_is_charged(fed: dict[str, Any]) -> None:
    one = _submit(
        fed,
        spec(
            fed["lumi"],
            ["bash", "-c", "echo on $SLURM_CLUSTER_NAME; sleep 1"],
            resources={"gpus_per_node": 2},
        ),
    )
    two = _submit(
        fed,
        spec(
            fed["mimer"],
            ["bash", "-c", "echo gpus=$SLURM_GPUS_ON_NODE; sleep 1"],
            resources={"gpus_per_node": 4},
        ),
    )
    assert (one["factory"], two["factory"]) == ("LUMI AIF", "MIMER")
    run_until(
        fed["runner"],
        lambda: {_get(fed, j["id"])["state"] for j in (one, two)} == {"completed"},
        timeout=60,
        step=0.3,
    )
    for job, gpus, where in ((one, 2, "on factory1"), (two, 4, "gpus=4")):
        done = _get(fed, job["id"])
        (attempt,) = done["attempts"]
        assert done["exit_code"] == 0 and attempt["backend_id"].isdigit()
        history = [t["to_state"] for t in done["transitions"]]
        assert history[:3] == ["pending", "placed", "submitted"] and history[-1] == "completed"
        assert attempt["elapsed_s"] >= 1
        expected = usage_milli(
            gpus,
            timedelta(seconds=attempt["elapsed_s"]),
            Decimal("1.0") if job is one else Decimal("1.2"),
        )
        assert Decimal(done["charged_gpu_hours"]) * 1000 == expected
        logs = ok(fed["api"].get(f"{API}/jobs/{job['id']}/logs", headers=fed["anna"].headers))
        assert where in logs["text"]
    account = SiteAccounts(LocalTransport(fed["harness"]["FACTORY2_CONF"])).show(fed["mimer"])
    assert account is not None and account.gpu_minutes == round(100 / 1.2 * 60)


def test_failing_job_cancel_and_multi_node(fed: dict[str, Any]) -> None:
    fail = _submit(fed, spec(fed["lumi"], ["bash", "-c", "exit 3"]))
    wide = _submit(
        fed,
        spec(
            fed["lumi"],
            ["bash", "-c", "echo nodes=$SLURM_JOB_NUM_NODES"],
            resources={"nodes": 2, "gpus_per_node": 2},
        ),
    )
    slow = _submit(fed, spec(fed["lumi"], ["sleep", "60"]))
    _until(fed, slow["id"], "running")
    ok(fed["api"].post(f"{API}/jobs/{slow['id']}/cancel", headers=fed["anna"].headers))
    assert _until(fed, fail["id"], "failed")["exit_code"] == 3
    assert _until(fed, slow["id"], "cancelled")["state"] == "cancelled"
    assert _until(fed, wide["id"], "completed")["exit_code"] == 0
    logs = ok(fed["api"].get(f"{API}/jobs/{wide['id']}/logs", headers=fed["anna"].headers))
    assert "nodes=2" in logs["text"]


def test_more_gpus_than_the_partition_has_is_refused_at_placement(fed: dict[str, Any]) -> None:
    response = fed["api"].post(
        f"{API}/jobs",
        headers=fed["anna"].headers,
        json=spec(fed["lumi"], ["true"], resources={"gpus_per_node": 8}),
    )
    assert response.status_code == 409
    assert "needs 8 GPUs per node, partition has 4" in response.text


def test_controller_outage_marks_the_site_unavailable_and_loses_nothing(
    fed: dict[str, Any],
) -> None:
    running = _submit(fed, spec(fed["lumi"], ["sleep", "15"]))
    _until(fed, running["id"], "running")
    subprocess.run([*HARNESS, "stop-ctld", "factory1"], check=True, capture_output=True)
    try:
        agent = next(a for a in fed["runner"].agents if a.name == "LUMI AIF")
        assert agent.tick() is False  # the scheduler does not answer
        waiting = _submit(fed, spec(fed["lumi"], ["bash", "-c", "echo after the outage"]))
        assert waiting["state"] == "pending"
        why = ok(fed["api"].get(f"{API}/jobs/{waiting['id']}/why", headers=fed["anna"].headers))
        assert why["rejected"]["LUMI AIF/LUMI-AI/gpu"] == "site is not operational"
    finally:
        subprocess.run([*HARNESS, "start-ctld", "factory1"], check=True, capture_output=True)
    assert _until(fed, running["id"], "completed", timeout=120)["exit_code"] == 0
    done = _until(fed, waiting["id"], "completed", timeout=60)
    assert len(done["attempts"]) == 1


def _logs(fed: dict[str, Any], job_id: int) -> str:
    path = f"{API}/jobs/{job_id}/logs"
    return str(ok(fed["api"].get(path, headers=fed["anna"].headers))["text"])


def test_a_batch_script_runs_once_and_its_own_srun_launches_the_tasks(fed: dict[str, Any]) -> None:
    # Before: the whole script ran once per node, so its own srun started nodes x tasks copies.
    script = (
        "#!/bin/bash -l\n"
        'echo "batch step on $SLURMD_NODENAME args=$# first=$1 login=$(shopt -q login_shell'
        ' && echo yes)"\n'
        "srun bash -c 'echo task $SLURM_PROCID of $SLURM_NTASKS'\n"
    )
    body = spec(fed["lumi"], "x", resources={"nodes": 2, "gpus_per_node": 1, "tasks_per_node": 2})
    body.pop("command")
    job = _submit(fed, {**body, "script": script, "args": ["a b", "c"]})
    assert _until(fed, job["id"], "completed", "failed")["state"] == "completed"
    text = _logs(fed, job["id"])
    assert text.count("batch step on") == 1, text
    assert "args=2 first=a b login=yes" in text
    assert sorted(line for line in text.splitlines() if line.startswith("task ")) == [
        f"task {i} of 4" for i in range(4)
    ]


def test_an_array_runs_each_task_as_a_slurm_array_task(fed: dict[str, Any]) -> None:
    body = spec(
        fed["mimer"], ["bash", "-c", "echo index=$SLURM_ARRAY_TASK_ID; sleep 1"], array="3,5%1"
    )
    first = _submit(fed, body)
    tasks = ok(fed["api"].get(f"{API}/jobs?array={first['id']}", headers=fed["anna"].headers))
    ids = sorted((t["array_task"], t["id"]) for t in tasks["jobs"])
    assert [task for task, _ in ids] == [3, 5]
    for task, job_id in ids:
        done = _until(fed, job_id, "completed", "failed")
        assert done["state"] == "completed", done["reason"]
        assert f"index={task}" in _logs(fed, job_id)
        backend_id = done["attempts"][-1]["backend_id"]
        shown = subprocess.run(
            ["scontrol", "show", "job", "-o", backend_id],
            env={"SLURM_CONF": fed["harness"]["FACTORY2_CONF"], "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        assert shown == "" or f"ArrayTaskId={task}" in shown  # gone after MinJobAge
        assert float(done["charged_gpu_hours"]) > 0
