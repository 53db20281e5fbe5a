"""Failover on the two real Slurm clusters: factory1's slurmctld stops while the example GPT
trains there; the job resumes on factory2 from the checkpoint replicated off factory1, and its
loss curve continues from that step (never from 0).

LUMI AIF is factory1 and MIMER factory2 (see test_site_agents_real.py). Both clusters run on
this host, so MIMER gets a job root of its own: nothing reaches it but what the control plane
staged there. The stopped slurmctld is always started again (other tests use the cluster).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import HARNESS, resume_killed, slurm
from sqlalchemy import select
from unix_users import ensure_unix_user, map_login

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import CheckpointCopy, Factory, JobAttempt, StaleAttempt
from aifactory.domain.enums import Role
from aifactory.executors import _jobuser
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, entitle, member_of, ok
from aifactory.testing.jobs import run_until, spec, wait_for
from aifactory.testing.people import Person, make_person

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),  # a ceiling only: every wait below fails as soon as progress stalls
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None and os.environ.get("CI") != "true",
        reason="torch not installed (pip install 'aifactory[train]')",
    ),
]
API = "/api/v1"
LOGIN = "aif-anna"
HOME, OTHER = "LUMI AIF", "MIMER"
TRAIN = Path(__file__).resolve().parents[3] / "examples" / "train_gpt" / "train.py"
STEPS = 120  # still training when the controller stops (a few steps a second), short to finish
EVERY = 10  # checkpoint and log every 10 steps


def _sites(h: dict[str, str], other_root: str) -> dict[str, Any]:
    common = {"command_timeout_s": 30.0, "partitions": {"gpu": "debug"}}
    lumi = {"cluster": "factory1", "slurm_conf": h["FACTORY1_CONF"], "accounting": False}
    # Without its controller a Slurm command waits out its time-out: 10 s here, not 30.
    lumi_timeout = {"command_timeout_s": 10.0}
    mimer = {"cluster": "factory2", "slurm_conf": h["FACTORY2_CONF"], "gpu_type": "h100"}
    return {
        "sites": [
            {
                "factory": HOME,
                "executor": "slurm",
                "options": {**common, **lumi, **lumi_timeout, "job_root": h["JOB_ROOT"]},
            },
            {
                "factory": OTHER,
                "executor": "slurm",
                "options": {**common, **mimer, "gpu_request": "gres", "job_root": other_root},
            },
        ]
    }


def _status(db: Database, factory: str, status: str) -> None:
    with db.session() as s:
        s.scalars(select(Factory).where(Factory.name == factory)).one().status = status


def _ctld(action: str) -> None:
    subprocess.run([*HARNESS, action, "factory1"], check=True, capture_output=True, timeout=120)


def _restore_factory1(h: dict[str, str], db: Database) -> None:
    """Leave factory1 as the next tests expect it: this test's jobs gone, every node in service.

    A step that finished while slurmctld was stopped keeps retrying its completion message;
    the scancel of its stale attempt then runs into Slurm's UnkillableStepTimeout and the node
    is drained "Kill task failed" once the step is gone. An operator resumes such a node after
    an outage; so does this test, once its jobs have left the cluster.
    """
    with db.session() as s:
        home = s.scalars(select(Factory.id).where(Factory.name == HOME)).one()
        attempts = select(JobAttempt.backend_id).where(JobAttempt.factory_id == home)
        ours = {b for b in s.scalars(attempts) if b}
    conf = h["FACTORY1_CONF"]
    if ours:
        slurm(conf, "scancel", *ours)

    def listed() -> list[str]:
        return sorted(slurm(conf, "squeue", "-h", "-o", "%i %T").split())

    def gone() -> bool:
        return not ours.intersection(listed())

    wait_for(
        gone,
        lambda: tuple(listed()),
        stall=300,  # UnkillableStepTimeout (60 s) after a completion retry of up to 2 minutes
        step=1.0,
        what="this test's jobs to leave factory1",
    )
    resume_killed(conf)


@pytest.fixture
def fed(harness: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    entry = pwd.getpwnam(ensure_unix_user(LOGIN))
    if not _jobuser.ensure_python(
        _jobuser.JobUser(LOGIN, entry.pw_uid, entry.pw_gid), sys.executable
    ):
        pytest.skip(f"{LOGIN} cannot run {sys.executable}")
    other_root = Path(harness["JOB_ROOT"]) / f"failover-f2-{uuid.uuid4().hex[:8]}"
    other_root.mkdir()
    other_root.chmod(0o1777)  # like the job root: each person's job directories are their own
    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(_sites(harness, str(other_root))))
    settings = Settings(data_dir=tmp_path / "data", sites_file=sites, failover_grace_s=3.0)
    db = prepare(settings)
    with db.session() as s:  # the registry describes the real test clusters
        registry.update_partition(
            s, HOME, "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4, "gpu_model": "GPU"}
        )
        registry.update_partition(
            s, OTHER, "MIMER", "gpu", {"nodes": 2, "gpus_per_node": 8, "gpu_model": "H100"}
        )
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        for factory in (HOME, OTHER):
            map_login(db, "anna", factory, LOGIN)
        operator = make_person(db, "op1", [(Role.FACTORY_OPERATOR, HOME)])
        code, allocation = award(api, anna, operator, hours=100)
        entitle(db, allocation, OTHER)
        try:
            yield {"api": api, "anna": anna, "code": code, "db": db, "settings": settings}
        finally:
            _restore_factory1(harness, db)
    db.dispose()
    shutil.rmtree(other_root, ignore_errors=True)


def _get(api: TestClient, anna: Person, path: str) -> Any:
    return ok(api.get(f"{API}{path}", headers=anna.headers))


def test_a_stopped_slurmctld_moves_gpt_training_to_the_other_cluster_which_continues_it(
    fed: dict[str, Any],
) -> None:
    api, anna, db = fed["api"], fed["anna"], fed["db"]
    args = ["--steps", str(STEPS), "--log-every", str(EVERY), "--checkpoint-dir", "gpt"]
    args += ["--checkpoint-every", str(EVERY), "--threads", "1", "--eval-every", "0"]
    body = spec(
        fed["code"],
        [sys.executable, str(TRAIN), *args, "--sample-chars", "0"],
        resources={"time_limit": 1200},
        checkpoint_dir="gpt",
        retry={"max_attempts": 3, "on": ["node_failed"]},
    )
    _status(db, OTHER, "deploying")  # so the job starts at LUMI AIF, whatever the ranking
    job_id = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)["id"]
    runner = AgentRunner(fed["settings"], db)
    for agent in runner.agents:
        agent.failover.checkpoint_poll_s = 0.5
    job = lambda: _get(api, anna, f"/jobs/{job_id}")  # noqa: E731

    def copy() -> CheckpointCopy | None:
        with db.session() as s:
            row = s.get(CheckpointCopy, job_id)
            if row is not None:
                s.expunge(row)
            return row

    # It trains on factory1 and at least one checkpoint has been copied off the cluster.
    run_until(runner, lambda: (c := copy()) is not None and (c.step or 0) >= EVERY, step=0.3)
    assert job()["factory"] == HOME and job()["state"] == "running"
    _status(db, OTHER, "operational")
    first_backend = job()["attempts"][0]["backend_id"]
    _ctld("stop-ctld")
    try:
        lumi = next(a for a in runner.agents if a.name == HOME)
        lumi.tick()  # the first look that finds no controller starts the outage
        last = copy()  # nothing more is copied from a cluster whose agent cannot reach it
        assert last is not None and last.attempt == 1
        run_until(runner, lambda: job()["attempt"] == 2 and job()["state"] == "running", step=0.3)
        assert job()["factory"] == OTHER
    finally:
        _ctld("start-ctld")
    lumi._retry_at = 0.0  # its back-off is not what this test waits for

    def cancelled_there() -> bool:
        with db.session() as s:
            row = s.scalars(select(StaleAttempt).where(StaleAttempt.job_id == job_id)).one()
            return row.cancelled_at is not None

    run_until(runner, cancelled_there, step=0.3)  # the first attempt is scancelled on factory1
    run_until(runner, lambda: job()["state"] == "completed", step=0.3)

    done = job()
    attempts = [(a["factory"], a["state"]) for a in done["attempts"]]
    assert attempts == [(HOME, "node_failed"), (OTHER, "completed")], done["attempts"]
    assert done["attempts"][0]["backend_id"] == first_backend
    second = _get(api, anna, f"/jobs/{job_id}/logs?attempt=2")["text"]
    start = next(line for line in second.splitlines() if line.startswith("start step="))
    resumed = int(start.split("step=")[1].split()[0])
    assert "resumed=true" in start
    assert last.step is not None and resumed >= last.step >= EVERY  # the replicated step, not 0
    metrics = _get(api, anna, f"/jobs/{job_id}/metrics")
    assert metrics["attempt"] == 2 and metrics["finished"]
    loss = next(s for s in metrics["series"] if s["key"] == "loss")
    assert min(loss["steps"]) > resumed and max(loss["steps"]) == STEPS  # it went on from there
    first = _get(api, anna, f"/jobs/{job_id}/logs?attempt=1")["text"]
    first_loss = float(
        next(ln for ln in first.splitlines() if ln.startswith("step=")).split("loss=")[1].split()[0]
    )
    assert loss["values"][0] < first_loss  # the curve continues: no return to an untrained model
    print(  # the figures the closing note asks for
        f"failover: trained on factory1 to step {last.step} (copy v{last.version}), resumed on "
        f"factory2 at step {resumed}, loss {first_loss:.3f} -> {loss['values'][0]:.3f} at step "
        f"{loss['steps'][0]} -> {loss['values'][-1]:.3f} at step {loss['steps'][-1]}"
    )
