"""Slurm's own start estimates (``squeue --start``) in ``jobs why``, on a real cluster.

LUMI AIF is backed by cluster factory1 (4 nodes x 4 GPUs). A job someone started on the cluster
outside the federation holds one GPU of n4; the federation, which does not see it, hands over a
job that needs the whole cluster: Slurm queues it behind the other one and, after its next
backfill cycle, says when it expects it to start. The site agent records that; ``why`` shows it
for the queued job and for a job the broker still holds because the site is full.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import slurm
from sqlalchemy import select
from unix_users import map_login

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.models import Job
from aifactory.domain.enums import Role
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import run_until, spec
from aifactory.testing.people import make_person

API = "/api/v1"
LUMI = "LUMI AIF/LUMI-AI/gpu"


def _slurm(h: dict[str, str], *argv: str) -> str:
    return slurm(h["FACTORY1_CONF"], *argv).strip()


@pytest.fixture
def lumi(harness: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    options = {
        "job_root": harness["JOB_ROOT"], "command_timeout_s": 30.0, "partitions": {"gpu": "debug"},
        "cluster": "factory1", "slurm_conf": harness["FACTORY1_CONF"], "accounting": False,
    }  # fmt: skip
    sites = tmp_path / "sites.yaml"
    site = {"factory": "LUMI AIF", "executor": "slurm", "options": options}
    sites.write_text(yaml.safe_dump({"sites": [site]}))
    settings = Settings(data_dir=tmp_path / "data", sites_file=sites)
    db = prepare(settings)
    with db.session() as s:
        registry.update_partition(
            s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4, "gpu_model": "GPU"}
        )
    # Outside the federation: one GPU of n4 for at most 3 minutes (cancelled at the end).
    out = f"--output={harness['JOB_ROOT']}/outside-%j.out"
    other = _slurm(harness, "sbatch", "--parsable", "-J", "aif-test-outside", "-N", "1", "-w",
                   "n4", "--gpus-per-node=1", "-t", "3", out, "--wrap", "sleep 170")  # fmt: skip
    assert other.isdigit(), other
    try:
        with TestClient(create_app(settings, db)) as api:
            anna = member_of(db, "anna", "Nordic Tokens Oy")
            map_login(db, "anna", "LUMI AIF", "aif-anna")
            op = make_person(db, "op1", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
            code, _ = award(api, anna, op, hours=100)
            runner = AgentRunner(settings, db)
            yield {"api": api, "anna": anna, "code": code, "runner": runner, "h": harness}
    finally:
        _slurm(harness, "scancel", other)
        with db.session() as s:  # by id: other tests' jobs may carry the same names
            ours = [b for b in s.scalars(select(Job.backend_id)) if b]
        if ours:
            _slurm(harness, "scancel", *ours)
        db.dispose()


def _why(env: dict[str, Any], job_id: int) -> dict[str, Any]:
    return ok(env["api"].get(f"{API}/jobs/{job_id}/why", headers=env["anna"].headers))


def _candidate(env: dict[str, Any], job_id: int) -> dict[str, Any]:
    return next(c for c in _why(env, job_id)["candidates"] if c["site"] == LUMI)


def test_why_shows_slurms_estimate_for_a_job_waiting_behind_another(
    lumi: dict[str, Any],
) -> None:
    api, headers = lumi["api"], lumi["anna"].headers
    body = spec(lumi["code"], ["true"], resources={"nodes": 4, "gpus_per_node": 4})
    whole = ok(api.post(f"{API}/jobs", headers=headers, json=body), 201)
    assert whole["state"] == "placed"  # the federation sees 16 free GPUs

    def estimated() -> bool:
        c = _candidate(lumi, whole["id"])
        return c["basis"] == "slurm"

    # Handed over, queued by Slurm behind the other job, estimated on its next backfill cycle.
    run_until(lumi["runner"], estimated, timeout=120, step=0.5, ceiling=180)
    mine = _candidate(lumi, whole["id"])
    assert mine["verdict"] == "chosen"
    assert mine["reason"] == "queued at the site's scheduler"
    assert 0 < mine["est_start_s"] <= 3 * 60  # by the other job's 3-minute limit

    # The broker holds the next job (the federation's own count says the site is full): its
    # estimate for LUMI is Slurm's too, not "now".
    small = ok(api.post(f"{API}/jobs", headers=headers, json=spec(lumi["code"], ["true"])), 201)
    assert small["state"] == "pending"
    held = _candidate(lumi, small["id"])
    assert (held["verdict"], held["basis"], held["free_gpus"]) == ("waits", "slurm", 0)
    assert held["est_start_s"] > 0
