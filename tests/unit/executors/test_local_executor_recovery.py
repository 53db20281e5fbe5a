"""A fresh executor on the same state directory picks up where a crashed one left off."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from exechelpers import Holder, Wait

from aifactory.executors import ExecJob, ExecState, LocalExecutor


def test_fresh_instance_sees_a_running_job_and_starts_no_second_process(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    old = LocalExecutor(state_dir, gpus=2)
    spec = holder.job("survivor", gpus=2)
    backend_id = old.submit(spec)
    wait(old, backend_id, ExecState.RUNNING)
    del old  # the server crashed; the job's wrapper lives on in its own session
    gc.collect()

    new = LocalExecutor(state_dir, gpus=2)
    assert new.recover() == [backend_id]
    assert new.poll([backend_id])[backend_id].state is ExecState.RUNNING
    assert new.submit(spec) == backend_id  # the agent re-submits after restart: same job
    holder.release("survivor")
    status = wait(new, backend_id, ExecState.COMPLETED)
    assert status.exit_code == 0
    assert holder.run_count() == 1
    assert read_stdout(new, backend_id) == "gpus=0,1"


def test_fresh_instance_reads_the_exit_code_of_a_job_that_ended_meanwhile(
    state_dir: Path, wait: Wait, executor: LocalExecutor
) -> None:
    old = LocalExecutor(state_dir)
    spec = ExecJob(job_id="ended", argv=[sys.executable, "-c", "raise SystemExit(5)"])
    backend_id = old.submit(spec)
    jobdir = state_dir / "jobs" / backend_id
    deadline = time.monotonic() + 10
    while not (jobdir / "exit.json").exists():  # ends without anyone polling it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    del old
    new = LocalExecutor(state_dir)
    status = new.poll([backend_id])[backend_id]
    assert (status.state, status.exit_code) == (ExecState.FAILED, 5)
    assert new.recover() == []


def test_queued_jobs_survive_a_restart_and_start_when_gpus_free_up(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    old = LocalExecutor(state_dir, gpus=1)
    first = old.submit(holder.job("first", gpus=1))
    second = old.submit(holder.job("second", gpus=1))
    wait(old, first, ExecState.RUNNING)
    del old

    new = LocalExecutor(state_dir, gpus=1)
    assert new.recover() == sorted([first, second])
    assert new.poll([second])[second].state is ExecState.QUEUED
    holder.release("first")
    wait(new, first, ExecState.COMPLETED)
    wait(new, second, ExecState.RUNNING)
    holder.release("second")
    wait(new, second, ExecState.COMPLETED)
    assert holder.run_count() == 2


def test_job_whose_wrapper_vanished_is_node_failed_and_its_processes_killed(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir)
    backend_id = ex.submit(holder.job("orphan"))
    wait(ex, backend_id, ExecState.RUNNING)
    state = json.loads((state_dir / "jobs" / backend_id / "state.json").read_text())
    os.kill(state["wrapper_pid"], signal.SIGKILL)  # what a host reboot does to the wrapper

    status = wait(ex, backend_id, ExecState.NODE_FAILED)
    assert status.exit_code is None and "wrapper" in status.message
    deadline = time.monotonic() + 3
    while Path(f"/proc/{state['child_pid']}").exists() and not zombie(state["child_pid"]):
        assert time.monotonic() < deadline, "the unsupervised job kept running"
        time.sleep(0.02)


def read_stdout(ex: LocalExecutor, backend_id: str) -> str:
    return ex.log_paths(backend_id)[0].read_text().strip()


def zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


class _Killed(BaseException):
    """Stands for kill -9 of the launching process at one line."""


def test_a_launch_whose_launcher_died_before_starting_the_wrapper_runs_once_later(
    state_dir: Path,
    holder: Holder,
    wait: Wait,
    executor: LocalExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def killed(*_: object, **__: object) -> None:
        raise _Killed

    old = LocalExecutor(state_dir, gpus=1)
    monkeypatch.setattr("aifactory.executors.local.subprocess.Popen", killed)
    with pytest.raises(_Killed):  # launch record written, wrapper never started
        old.submit(holder.job("interrupted", gpus=1))
    monkeypatch.undo()
    (jobdir,) = (state_dir / "jobs").iterdir()
    gone = subprocess.Popen(["true"])  # the launching process: dead now
    gone.wait()
    launch = json.loads((jobdir / "launch.json").read_text())
    (jobdir / "launch.json").write_text(json.dumps({**launch, "launcher_pid": gone.pid}))
    del old

    new = LocalExecutor(state_dir, gpus=1)
    assert new.poll([jobdir.name])[jobdir.name].state is not ExecState.NODE_FAILED
    wait(new, jobdir.name, ExecState.RUNNING)
    holder.release("interrupted")
    assert wait(new, jobdir.name, ExecState.COMPLETED).exit_code == 0
    assert holder.run_count() == 1
