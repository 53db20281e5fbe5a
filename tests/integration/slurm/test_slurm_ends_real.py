"""How jobs end on the real test clusters: node failure and retry, unclear sbatch, lost jobs.

Every charge is checked against Slurm's own accounting (factory2's slurmdbd): ``sacct``'s
ElapsedRaw x the GPUs in AllocTRES x the partition's charge factor, rounded up to the ledger's
milli-GPU-hour, computed here with integers rather than with the product's helpers.

Other tests use the same clusters at the same time: foreign jobs are tolerated, at most one
node is set DOWN, for seconds, and it is always resumed in a ``finally``.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import new_id, settings
from sqlalchemy import select

from aifactory.agents.recording import LOST_REASON
from aifactory.agents.runner import AgentRunner
from aifactory.agents.site_agent import SiteAgent
from aifactory.api.app import create_app
from aifactory.db.models import Allocation, Job, Partition
from aifactory.domain.enums import Role
from aifactory.errors import BackendUnavailable
from aifactory.executors.base import ExecJob
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.failures import is_deferred
from aifactory.executors.slurm.transport import CommandResult, Transport
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import run_until, spec
from aifactory.testing.people import make_person

API = "/api/v1"
CLUSTERS = ("factory1", "factory2")
# Counts to STEPS, one step a second, keeping the step in $AIF_CHECKPOINT_DIR (relative to the
# job's directory, its working directory) and resuming from it.
CHECKPOINTED = r"""
set -eu
mkdir -p "$AIF_CHECKPOINT_DIR"
f="$AIF_CHECKPOINT_DIR/step"
step=$(cat "$f" 2>/dev/null || echo 0)
echo "attempt $AIF_ATTEMPT resumes at step $step on $SLURMD_NODENAME"
while [ "$step" -lt 20 ]; do
  sleep 1
  step=$((step + 1))
  echo "$step" > "$f.tmp" && mv "$f.tmp" "$f"
done
echo "done at step $step"
"""


def _sites(h: dict[str, str]) -> dict[str, Any]:
    common = {
        "job_root": h["JOB_ROOT"],
        "command_timeout_s": 30.0,
        "partitions": {"gpu": "debug"},
        "require_site_account": False,  # the service's user runs these jobs
    }
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


class Fed:
    def __init__(self, api: TestClient, anna: Any, projects: dict[str, str], db: Any,
                 runner: AgentRunner, h: dict[str, str]) -> None:  # fmt: skip
        self.api, self.anna, self.projects, self.db, self.runner, self.h = (
            api, anna, projects, db, runner, h
        )  # fmt: skip

    def agent(self, name: str) -> SiteAgent:
        return next(a for a in self.runner.agents if a.name == name)

    def submit(self, site: str, command: list[str], **extra: Any) -> int:
        body = spec(self.projects[site], command, **extra)
        created = ok(self.api.post(f"{API}/jobs", headers=self.anna.headers, json=body), 201)
        return int(created["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        return ok(self.api.get(f"{API}/jobs/{job_id}", headers=self.anna.headers))  # type: ignore[no-any-return]

    def log(self, job_id: int, attempt: int) -> str:
        url = f"{API}/jobs/{job_id}/logs?attempt={attempt}"
        return str(ok(self.api.get(url, headers=self.anna.headers))["text"])

    def until(self, job_id: int, check: Any, timeout: float = 180) -> dict[str, Any]:
        """Tick the agents until ``check(job)``; a stall says where the job and Slurm were."""
        try:
            run_until(self.runner, lambda: bool(check(self.job(job_id))), timeout=timeout, step=0.3)
        except AssertionError as exc:
            job = self.job(job_id)
            queue = {c: self.slurm(c, "squeue", "-h", "-o", "%i %T %r %N %b") for c in CLUSTERS}
            raise AssertionError(f"{exc}\njob: {job['state']} {job['reason']!r} "
                                 f"{job['attempts']}\nqueues: {queue}") from exc  # fmt: skip
        return self.job(job_id)

    def factor(self, site: str) -> Fraction:
        with self.db.session() as s:
            alloc = s.scalars(
                select(Allocation).where(Allocation.project_code == self.projects[site])
            ).one()
            return Fraction(str(s.get_one(Partition, alloc.partition_id).charge_factor))

    def ledger(self, site: str) -> tuple[int, int]:
        with self.db.session() as s:
            alloc = s.scalars(
                select(Allocation).where(Allocation.project_code == self.projects[site])
            ).one()
            return alloc.reserved_milli, alloc.used_milli

    def job_dir(self, job_id: int) -> Path:
        with self.db.session() as s:
            return Path(self.h["JOB_ROOT"]) / s.get_one(Job, job_id).exec_id

    def slurm(self, cluster: str, *argv: str) -> str:
        conf = self.h["FACTORY1_CONF" if cluster == "factory1" else "FACTORY2_CONF"]
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=30, check=True,
            env={"SLURM_CONF": conf, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
        )  # fmt: skip
        return proc.stdout


@pytest.fixture
def fed(harness: dict[str, str], tmp_path: Path) -> Iterator[Fed]:
    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(_sites(harness)))
    settings = Settings(data_dir=tmp_path / "data", sites_file=sites, lost_grace_s=600)
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
        lumi_op = make_person(db, "op1", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        mimer_op = make_person(db, "op2", [(Role.FACTORY_OPERATOR, "MIMER")])
        lumi, _ = award(api, anna, lumi_op, hours=100)
        mimer, _ = award(api, anna, mimer_op, call="mimer-pg", partition="MIMER/gpu", hours=100)
        runner = AgentRunner(settings, db)
        yield Fed(api, anna, {"LUMI AIF": lumi, "MIMER": mimer}, db, runner, harness)
    db.dispose()


def sacct_run(fed: Fed, backend_id: str) -> dict[str, Any]:
    """Slurm's own finished record of a job (waits out sacct's lag)."""
    deadline = time.monotonic() + 30
    while True:
        out = fed.slurm(
            "factory2", "sacct", "-j", backend_id, "--allocations", "--noheader",
            "--parsable2", "-o", "State,ElapsedRaw,AllocTRES,NodeList",
        )  # fmt: skip
        state, elapsed, tres, nodes = (out.strip().splitlines() or ["PENDING|0||"])[-1].split("|")
        if state.split()[0] not in ("PENDING", "RUNNING", "COMPLETING"):
            gpus = sum(int(n) for n in re.findall(r"gres/gpu=(\d+)", tres))
            return {"state": state, "elapsed": int(elapsed), "gpus": gpus, "nodes": nodes}
        assert time.monotonic() < deadline, f"sacct still says {state} for {backend_id}"
        time.sleep(0.5)


def harness_conf(h: dict[str, str]) -> dict[str, str]:
    return {"SLURM_CONF": h["FACTORY2_CONF"], "PATH": "/usr/bin:/bin"}


def accounted(env: dict[str, str], name: str) -> list[str]:
    """Job ids factory2's accounting has under ``name`` (its name index lags a little)."""
    argv = ["sacct", "-a", "--name", name, "-X", "-n", "-P", "-o", "JobID"]
    for _ in range(60):
        found = subprocess.run(
            [*argv, "--starttime", "now-1hours"], capture_output=True, text=True, env=env,
            check=True,
        ).stdout.split()  # fmt: skip
        if found:
            return found
        time.sleep(0.25)
    return []


def expected_milli(record: dict[str, Any], factor: Fraction) -> int:
    """ceil(ElapsedRaw x GPUs x factor x 1000 / 3600): the ledger's unit, rounded up."""
    exact = Fraction(record["elapsed"] * record["gpus"]) * factor * 1000 / 3600
    return -(-exact.numerator // exact.denominator)


def _charged_milli(attempt: dict[str, Any]) -> int:
    return int(Fraction(attempt["charged_gpu_hours"]) * 1000)


# --- node failure --------------------------------------------------------------------------


def test_a_node_set_down_fails_the_attempt_which_is_retried_and_resumes(fed: Fed) -> None:
    job_id = fed.submit(
        "MIMER",
        ["bash", "-c", CHECKPOINTED],
        checkpoint_dir="ckpt",
        retry={"max_attempts": 2, "on": ["node_failed"]},
        # 4 GPUs x factor 1.2: every second of run time moves the charge by > 1 milli-GPU-hour
        resources={"time_limit": 300, "gpus_per_node": 4},
    )
    step = fed.job_dir(job_id) / "ckpt" / "step"
    fed.until(job_id, lambda j: j["state"] == "running" and step.exists()
              and int(step.read_text() or 0) >= 3)  # fmt: skip
    first = fed.job(job_id)["attempts"][0]["backend_id"]
    node = fed.slurm("factory2", "squeue", "-h", "-j", first, "-o", "%N").strip()
    assert re.fullmatch(r"f2n\d", node), node
    try:
        # The harness runs ReturnToService=2: a DOWN node that answers is back in service
        # within milliseconds. DRAIN first keeps new work (the retry) off it meanwhile; DOWN
        # then fails the job running there, as a node failure does.
        for state in ("drain", "down"):
            fed.slurm("factory2", "scontrol", "update", f"nodename={node}", f"state={state}",
                      "reason=aif-test-node-failure")  # fmt: skip
        fed.until(job_id, lambda j: j["attempt"] == 2 and j["state"] == "running", timeout=120)
    finally:
        fed.slurm("factory2", "scontrol", "update", f"nodename={node}", "state=resume")
    done = fed.until(job_id, lambda j: j["state"] in ("completed", "failed"))
    one, two = done["attempts"]
    assert (done["state"], one["state"], two["state"]) == ("completed", "node_failed", "completed")
    assert "resumes at step 0" in fed.log(job_id, 1)
    log2 = fed.log(job_id, 2)
    resumed = int(log2.split("resumes at step ")[1].split()[0])
    assert resumed >= 3 and "done at step 20" in log2
    factor = fed.factor("MIMER")
    records = [sacct_run(fed, a["backend_id"]) for a in (one, two)]
    assert records[0]["state"] == "NODE_FAIL" and records[0]["nodes"] == node
    assert records[1]["state"] == "COMPLETED" and records[1]["nodes"] != node
    for attempt, record in zip((one, two), records, strict=True):
        assert record["gpus"] == 4
        assert _charged_milli(attempt) == expected_milli(record, factor), (attempt, record)
        print(f"attempt {attempt['attempt']}: sacct {record} -> {_charged_milli(attempt)} m")
    assert fed.ledger("MIMER") == (0, sum(_charged_milli(a) for a in (one, two)))


# --- an sbatch whose answer never arrives --------------------------------------------------


class CutAfterSbatch:
    """The real transport, except that the first sbatch's answer is lost after it ran."""

    def __init__(self, inner: Transport, how: str) -> None:
        self.inner, self.how, self.cut = inner, how, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def as_user(self, login: str) -> CutAfterSbatch:
        return CutAfterSbatch(self.inner.as_user(login), self.how)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        result = self.inner.run(argv, stdin)
        if "sbatch" in argv and not self.cut:
            self.cut += 1
            assert result.returncode == 0, result  # it really was submitted
            if self.how == "ssh":  # ssh -o LogLevel=ERROR prints nothing when the link drops
                return CommandResult(255, "", "")
            raise BackendUnavailable("sbatch did not answer within 30s")
        return result


@pytest.mark.parametrize("how", ["ssh", "timeout"])
def test_an_sbatch_whose_answer_is_lost_makes_one_job_charged_once(fed: Fed, how: str) -> None:
    backend = fed.agent("MIMER").executor.backend  # type: ignore[attr-defined]
    cut = CutAfterSbatch(backend.transport, how)
    backend.transport = cut
    job_id = fed.submit("MIMER", ["bash", "-c", "sleep 2"], resources={"gpus_per_node": 4})
    done = fed.until(job_id, lambda j: j["state"] in ("completed", "failed"))
    assert cut.cut == 1 and done["state"] == "completed"
    (attempt,) = done["attempts"]
    with fed.db.session() as s:
        name = f"aif-{s.get_one(Job, job_id).exec_id}-1"
    record = sacct_run(fed, attempt["backend_id"])  # waits until accounting has it
    # Exactly one Slurm job for the attempt, in the controller and in accounting.
    queued = fed.slurm("factory2", "squeue", "-h", "-t", "all", "--name", name, "-o", "%i")
    recorded = accounted(harness_conf(fed.h), name)
    assert queued.split() == recorded == [attempt["backend_id"]], (queued, recorded)
    assert _charged_milli(attempt) == expected_milli(record, fed.factor("MIMER"))
    assert fed.ledger("MIMER") == (0, _charged_milli(attempt))


# --- jobs Slurm no longer reports ----------------------------------------------------------


class Forgetful:
    """The real transport, but the controller's ``squeue`` (``--json``, and the poll's
    ``--Format``) no longer lists ``hidden``."""

    def __init__(self, inner: Transport) -> None:
        self.inner, self.hidden = inner, set[str]()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def as_user(self, login: str) -> Transport:
        return self.inner.as_user(login)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        result = self.inner.run(argv, stdin)
        if list(argv[:2]) == ["squeue", "--json"] and result.returncode == 0 and self.hidden:
            data = json.loads(result.stdout)
            data["jobs"] = [
                j for j in data.get("jobs") or [] if str(j["job_id"]) not in self.hidden
            ]
            return CommandResult(0, json.dumps(data), result.stderr)
        if "squeue" in argv and any(a.startswith("--Format=") for a in argv) and self.hidden:
            lines = result.stdout.splitlines(keepends=True)  # the poll: one job a line
            kept = [ln for ln in lines if ln.split("|", 1)[0].strip() not in self.hidden]
            return CommandResult(result.returncode, "".join(kept), result.stderr)
        return result


def _forget(fed: Fed, site: str) -> Forgetful:
    backend = fed.agent(site).executor.backend  # type: ignore[attr-defined]
    forgetful = Forgetful(backend.transport)
    backend.transport = forgetful
    return forgetful


def test_a_job_slurm_forgets_without_accounting_fails_after_the_grace(fed: Fed) -> None:
    forgetful = _forget(fed, "LUMI AIF")
    job_id = fed.submit("LUMI AIF", ["sleep", "60"])
    running = fed.until(job_id, lambda j: j["state"] == "running")
    backend_id = running["attempts"][0]["backend_id"]
    try:
        forgetful.hidden.add(backend_id)
        lost = fed.until(job_id, lambda j: j["state"] == "lost")
        assert fed.ledger("LUMI AIF")[0] > 0  # still reserved while lost
        fed.agent("LUMI AIF").lost_grace = timedelta(seconds=3)
        done = fed.until(job_id, lambda j: j["state"] != "lost", timeout=30)
    finally:
        fed.slurm("factory1", "scancel", backend_id)
    assert lost["reason"].startswith("lost:")
    assert (done["state"], done["reason"]) == ("failed", LOST_REASON)
    assert fed.ledger("LUMI AIF") == (0, 0)  # released, nothing charged without a record


def test_a_job_slurm_forgets_is_settled_from_accounting(fed: Fed) -> None:
    forgetful = _forget(fed, "MIMER")
    job_id = fed.submit("MIMER", ["bash", "-c", "sleep 6"], resources={"gpus_per_node": 4})
    running = fed.until(job_id, lambda j: j["state"] == "running")
    backend_id = running["attempts"][0]["backend_id"]
    forgetful.hidden.add(backend_id)
    fed.until(job_id, lambda j: j["state"] == "lost")  # sacct says RUNNING: not a settlement
    done = fed.until(job_id, lambda j: j["state"] != "lost", timeout=60)
    assert done["state"] == "completed" and done["exit_code"] == 0
    (attempt,) = done["attempts"]
    record = sacct_run(fed, backend_id)
    assert record["gpus"] == 4
    assert _charged_milli(attempt) == expected_milli(record, fed.factor("MIMER"))
    assert fed.ledger("MIMER") == (0, _charged_milli(attempt))
    print(f"settled from sacct {record} -> {_charged_milli(attempt)} m")


# --- the budget Slurm enforces ---------------------------------------------------------------


def test_factory2_counts_budget_usage_that_never_decays(harness: dict[str, str]) -> None:
    """GrpTRESMins binds only under priority/multifactor, with usage that neither decays nor
    resets (docs/slurm.md, "Budgets that do not decay")."""
    conf = Path(harness["FACTORY2_CONF"])
    if "PriorityUsageResetPeriod" not in conf.read_text():
        pytest.skip("factory2 was started with an older slurm.conf: restart the harness")
    out = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=True,
        env={"SLURM_CONF": str(conf), "PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    config = dict(re.findall(r"^(\w+)\s+= (.*)$", out, re.MULTILINE))
    assert config["PriorityType"] == "priority/multifactor"
    assert config["PriorityDecayHalfLife"] == "00:00:00"
    assert config["PriorityUsageResetPeriod"] == "NONE"


# --- a real SSH connection cut right after sbatch was sent -----------------------------------


class KillSshAfterSend:
    """The real SSH transport; for sbatch the ssh client is killed right after the script was
    written to it: whether the remote sbatch ran, and when, is unknown to the caller."""

    def __init__(self, inner: Any, after_s: float) -> None:
        self.inner, self.after_s, self.killed = inner, after_s, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        if "sbatch" not in argv or self.killed:
            return self.inner.run(argv, stdin)  # type: ignore[no-any-return]
        proc = subprocess.Popen(
            self.inner.ssh_argv(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdin is not None
        proc.stdin.write(stdin or "")
        proc.stdin.close()
        time.sleep(self.after_s)
        proc.kill()
        proc.wait()
        self.killed += 1
        assert proc.stdout is not None and proc.stderr is not None
        return CommandResult(proc.returncode, proc.stdout.read(), proc.stderr.read())


@pytest.mark.parametrize("after_s", [0.05, 0.4])
def test_an_ssh_connection_cut_after_sending_sbatch_leaves_exactly_one_job(
    harness: dict[str, str], after_s: float
) -> None:
    options = {**settings(harness, "f2-ssh"), "command_timeout_s": 8.0}
    ex = SlurmExecutor(**{**options, "require_site_account": False})
    cut = KillSshAfterSend(ex.backend.transport, after_s)  # type: ignore[attr-defined]
    ex.backend.transport = cut  # type: ignore[attr-defined]
    spec = ExecJob(job_id=new_id(), argv=["sleep", "1"], gpus_per_node=1)
    deadline, deferrals = time.monotonic() + 60, 0
    while True:
        try:
            backend_id = ex.submit(spec)
            break
        except BackendUnavailable as exc:
            assert is_deferred(exc) and time.monotonic() < deadline, exc
            deferrals += 1
            time.sleep(min(float(exc.extra["retry_after_s"]), 2.0))
    assert cut.killed == 1
    name = f"aif-{spec.job_id}-1"
    conf = harness_conf(harness)
    queued = subprocess.run(
        ["squeue", "-h", "-t", "all", "--name", name, "-o", "%i"],
        capture_output=True, text=True, env=conf, check=True,
    ).stdout.split()  # fmt: skip
    recorded = accounted(conf, name)
    assert queued == recorded == [backend_id], (queued, recorded)
    print(f"ssh killed {after_s} s after send: {deferrals} deferral(s), one job {backend_id}")
