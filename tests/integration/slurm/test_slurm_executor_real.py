"""The Slurm executor against real daemons: both clusters, local/SSH/REST transports."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from slurmreal import HARNESS, new_id, settings, wait

from aifactory.errors import BackendUnavailable, Invalid
from aifactory.executors.base import ExecJob, ExecState
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.accounts import SiteAccounts
from aifactory.executors.slurm.transport import LocalTransport


def test_job_completes_with_exit_code_0(any_executor: SlurmExecutor) -> None:
    bid = any_executor.submit(
        ExecJob(job_id=new_id(), argv=["true"], gpus_per_node=1, time_limit_s=60)
    )
    status = wait(any_executor, bid)
    assert (status.state, status.exit_code) == (ExecState.COMPLETED, 0)
    assert status.started_at is not None and status.ended_at is not None


def test_failing_job_reports_its_exit_code(any_executor: SlurmExecutor) -> None:
    bid = any_executor.submit(ExecJob(job_id=new_id(), argv=["sh", "-c", "exit 7"]))
    status = wait(any_executor, bid)
    assert (status.state, status.exit_code) == (ExecState.FAILED, 7)


def test_cancel_a_running_job(any_executor: SlurmExecutor) -> None:
    bid = any_executor.submit(ExecJob(job_id=new_id(), argv=["sleep", "60"]))
    wait(any_executor, bid, state="running")
    any_executor.cancel(bid)
    assert wait(any_executor, bid).state is ExecState.CANCELLED
    any_executor.cancel(bid)  # a no-op once terminal


def test_retried_submit_after_a_crash_finds_the_first_job(any_executor: SlurmExecutor) -> None:
    spec = ExecJob(job_id=new_id(), argv=["sleep", "5"])
    first = any_executor.submit(spec)
    # A fresh executor (the agent restarted) knows nothing but the spec.
    again = SlurmExecutor(**any_executor.config.model_dump())
    assert again.submit(spec) == first
    any_executor.cancel(first)


def test_multi_node_job_runs_on_several_slurmd_nodes_and_reports_gpus(
    f1: SlurmExecutor, harness: dict[str, str]
) -> None:
    job_id = new_id()
    spec = ExecJob(
        job_id=job_id,
        argv=["sh", "-c", 'echo "$SLURMD_NODENAME $CUDA_VISIBLE_DEVICES"'],
        nodes=3,
        gpus_per_node=2,
    )
    bid = f1.submit(spec)
    assert wait(f1, bid).state is ExecState.COMPLETED
    out = Path(f"{harness['JOB_ROOT']}/aif-{job_id}-1.out").read_text().split("\n")
    nodes = [line.split()[0] for line in out if line]
    assert len(nodes) == 3 and len(set(nodes)) == 3, nodes  # three of n1..n4, whichever are free
    assert set(nodes) <= {"n1", "n2", "n3", "n4"}
    usage = f1.usage(bid)
    assert usage is not None and usage.gpus == 6


def test_usage_is_read_back_from_sacct(f2: SlurmExecutor) -> None:
    bid = f2.submit(ExecJob(job_id=new_id(), argv=["sleep", "2"], gpus_per_node=3))
    wait(f2, bid)
    time.sleep(1.0)  # sacct lags the controller by ~0.5 s
    record = f2.backend.accounting(bid)
    assert (
        record is not None
        and record.gpus == 3
        and record.elapsed_s is not None
        and record.elapsed_s >= 2
    )
    usage = f2.usage(bid)
    assert usage is not None and usage.gpus == 3 and usage.elapsed_s >= 2


@pytest.mark.parametrize("kind", ["f1-local", "f2-rest"])
def test_too_many_gpus_is_rejected_with_slurms_message_and_not_found_again(
    kind: str, harness: dict[str, str]
) -> None:
    ex = SlurmExecutor(**settings(harness, kind))
    spec = ExecJob(job_id=new_id(), argv=["true"], gpus_per_node=9)
    with pytest.raises(Invalid, match="Requested node configuration is not available"):
        ex.submit(spec)
    # The rejection consumed a job id under the same name; a retry must not report it.
    with pytest.raises(Invalid):
        ex.submit(spec)


def test_controller_down_is_backend_unavailable_and_jobs_survive_a_restart(
    f1: SlurmExecutor,
) -> None:
    # Longer than the outage (each client call retries ~9 s against a dead slurmctld): a job
    # ending while it is down stays COMPLETING until slurmd's step-complete retries get through.
    bid = f1.submit(ExecJob(job_id=new_id(), argv=["sleep", "14"]))
    wait(f1, bid, state="running")
    subprocess.run([*HARNESS, "stop-ctld", "factory1"], check=True, capture_output=True)
    try:
        with pytest.raises(BackendUnavailable):
            f1.poll([bid])  # submit, cancel and usage read through the same squeue first
    finally:
        subprocess.run([*HARNESS, "start-ctld", "factory1"], check=True, capture_output=True)
    assert wait(f1, bid, timeout=40).state is ExecState.COMPLETED


def test_project_account_with_zero_budget_holds_its_jobs(
    f2: SlurmExecutor, harness: dict[str, str]
) -> None:
    accounts = SiteAccounts(LocalTransport(harness["FACTORY2_CONF"]))
    project = new_id()
    account = accounts.ensure_account(project, 0, ["root"])
    assert accounts.ensure_account(project, 0, ["root"]) == account  # idempotent
    limit = accounts.show(project)
    assert limit is not None and limit.gpu_minutes == 0 and "root" in limit.users
    bid = f2.submit(ExecJob(job_id=new_id(), argv=["true"], gpus_per_node=1), project=project)
    time.sleep(1.5)
    status = f2.poll([bid])[bid]
    assert status.state is ExecState.QUEUED and "AssocGrpGRES" in status.message
    # A top-up raises the limit (the scheduler releases the job on its next full pass, which
    # can take a minute, so the test checks the limit rather than waiting for it).
    accounts.set_limit(project, 600)
    limit = accounts.show(project)
    assert limit is not None and limit.gpu_minutes == 600
    f2.cancel(bid)


@pytest.mark.slow
def test_time_limit_ends_as_timed_out(f1: SlurmExecutor) -> None:
    bid = f1.submit(ExecJob(job_id=new_id(), argv=["sleep", "300"], time_limit_s=30))
    assert wait(f1, bid, timeout=150).state is ExecState.TIMED_OUT
