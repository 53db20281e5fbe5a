"""The local executor runs real processes: exit codes, logs, limits, cancel, GPUs, queueing."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
from exechelpers import Holder, Wait, gone

from aifactory.errors import Invalid, NotFound
from aifactory.executors import ExecJob, ExecState, LocalExecutor


def py(code: str, job_id: str = "j1", **kw: object) -> ExecJob:
    return ExecJob(job_id=job_id, argv=[sys.executable, "-c", code], **kw)  # type: ignore[arg-type]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_successful_job_completes_with_exit_0_and_its_output_in_the_logs(
    executor: LocalExecutor, wait: Wait
) -> None:
    code = "import sys; print('hello out'); print('hello err', file=sys.stderr)"
    backend_id = executor.submit(py(code))
    status = wait(executor, backend_id, ExecState.COMPLETED)
    assert status.exit_code == 0
    assert status.started_at is not None and status.ended_at is not None
    assert status.ended_at >= status.started_at
    stdout, stderr = executor.log_paths(backend_id)
    assert read(stdout) == "hello out\n"
    assert read(stderr) == "hello err\n"
    usage = executor.usage(backend_id)
    assert usage is not None and usage.gpus == 0 and usage.elapsed_s > 0


def test_non_zero_exit_is_failed_with_that_exit_code(executor: LocalExecutor, wait: Wait) -> None:
    backend_id = executor.submit(py("raise SystemExit(3)"))
    assert wait(executor, backend_id, ExecState.FAILED).exit_code == 3


def test_death_by_signal_is_failed_with_128_plus_signal(
    executor: LocalExecutor, wait: Wait
) -> None:
    backend_id = executor.submit(py("import os; os.kill(os.getpid(), 9)"))
    assert wait(executor, backend_id, ExecState.FAILED).exit_code == 137


def test_missing_program_fails_with_127_like_a_shell(executor: LocalExecutor, wait: Wait) -> None:
    backend_id = executor.submit(ExecJob(job_id="nope", argv=["/no/such/program"]))
    assert wait(executor, backend_id, ExecState.FAILED).exit_code == 127
    assert "cannot start" in read(executor.log_paths(backend_id)[1])


def test_time_limit_terminates_the_job_as_timed_out(executor: LocalExecutor, wait: Wait) -> None:
    started = time.monotonic()
    backend_id = executor.submit(py("import time; time.sleep(30)", time_limit_s=0.5))
    status = wait(executor, backend_id, ExecState.TIMED_OUT)
    assert status.exit_code == 128 + 15
    assert time.monotonic() - started < 5


def test_time_limit_kills_a_job_that_ignores_sigterm_after_the_grace_period(
    executor: LocalExecutor, wait: Wait
) -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(30)"
    )
    backend_id = executor.submit(py(code, time_limit_s=0.3))
    assert wait(executor, backend_id, ExecState.TIMED_OUT).exit_code == 128 + 9


def test_cancel_kills_the_whole_process_group_grandchildren_included(
    executor: LocalExecutor, wait: Wait, tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild.pid"
    argv = ["/bin/bash", "-c", f"sleep 30 & echo $! > {pidfile}; wait"]
    backend_id = executor.submit(ExecJob(job_id="tree", argv=argv))
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    assert not gone(grandchild)
    executor.cancel(backend_id)
    assert wait(executor, backend_id, ExecState.CANCELLED).state is ExecState.CANCELLED
    deadline = time.monotonic() + 3
    while not gone(grandchild):
        assert time.monotonic() < deadline, "the grandchild survived the cancel"
        time.sleep(0.02)


def test_cancelled_queued_job_never_starts(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir, gpus=1, kill_grace_s=0.5)
    first = ex.submit(holder.job("first", gpus=1))
    second = ex.submit(holder.job("second", gpus=1))
    wait(ex, first, ExecState.RUNNING)
    assert ex.poll([second])[second].state is ExecState.QUEUED
    ex.cancel(second)
    holder.release("first")
    wait(ex, first, ExecState.COMPLETED)
    assert wait(ex, second, ExecState.CANCELLED).started_at is None
    assert ex.usage(second) is None
    assert holder.run_count() == 1
    ex.cancel(second)  # cancelling a finished job is a no-op


def test_gpus_are_assigned_as_cuda_visible_devices_and_busy_gpus_make_jobs_queue(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir, gpus=3, kill_grace_s=0.5)
    a = ex.submit(holder.job("a", gpus=2))
    b = ex.submit(holder.job("b", gpus=1))
    c = ex.submit(holder.job("c", gpus=1))
    wait(ex, a, ExecState.RUNNING)
    wait(ex, b, ExecState.RUNNING)
    assert ex.poll([c])[c].state is ExecState.QUEUED
    holder.release("b")
    wait(ex, b, ExecState.COMPLETED)
    wait(ex, c, ExecState.RUNNING)
    for job_id in ("a", "c"):
        holder.release(job_id)
    for backend_id in (a, c):
        wait(ex, backend_id, ExecState.COMPLETED)
    outputs = {bid: read(ex.log_paths(bid)[0]).strip() for bid in (a, b, c)}
    assert outputs == {a: "gpus=0,1", b: "gpus=2", c: "gpus=2"}


def test_queue_is_strict_fifo_so_a_waiting_big_job_is_not_overtaken(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir, gpus=2, kill_grace_s=0.5)
    small = ex.submit(holder.job("small", gpus=1))
    big = ex.submit(holder.job("big", gpus=2))
    cpu = ex.submit(holder.job("cpu", gpus=0))
    wait(ex, small, ExecState.RUNNING)
    assert {s.state for s in ex.poll([big, cpu]).values()} == {ExecState.QUEUED}
    holder.release("small")
    wait(ex, big, ExecState.RUNNING)
    wait(ex, cpu, ExecState.RUNNING)
    for job_id, backend_id in (("big", big), ("cpu", cpu)):
        holder.release(job_id)
        wait(ex, backend_id, ExecState.COMPLETED)
    assert read(ex.log_paths(cpu)[0]).strip() == "gpus="  # no GPUs granted: none visible


def test_submit_is_idempotent_per_job_and_attempt(
    executor: LocalExecutor, holder: Holder, wait: Wait
) -> None:
    spec = holder.job("once")
    first = executor.submit(spec)
    assert executor.submit(spec) == first
    retry = executor.submit(holder.job("once", attempt=2))
    assert retry != first
    for backend_id in (first, retry):
        wait(executor, backend_id, ExecState.RUNNING)
    holder.release("once")
    for backend_id in (first, retry):
        wait(executor, backend_id, ExecState.COMPLETED)
    assert executor.submit(spec) == first
    assert holder.run_count() == 2  # one process per attempt, none for the repeats


def test_argv_and_env_reach_the_job_verbatim_without_shell_interpretation(
    executor: LocalExecutor, wait: Wait, tmp_path: Path
) -> None:
    args = ["a b", "'single'", '"double"', "$(touch pwned)", "`touch pwned`", "*", "$HOME", ";|&"]
    env = {"TRICKY": "$(touch pwned) ; echo 'x' \"y\" *"}
    code = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['TRICKY']]))"
    spec = ExecJob(
        job_id="verbatim",
        argv=[sys.executable, "-c", code, *args],
        env=env,
        workdir=str(tmp_path),
    )
    backend_id = executor.submit(spec)
    wait(executor, backend_id, ExecState.COMPLETED)
    assert json.loads(read(executor.log_paths(backend_id)[0])) == [args, env["TRICKY"]]
    assert not (tmp_path / "pwned").exists()


def test_jobs_get_their_identity_but_not_the_platforms_secrets(
    executor: LocalExecutor, wait: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIF_DATABASE_URL", "postgresql://secret")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    backend_id = executor.submit(py(code, job_id="ident", attempt=3, env={"MINE": "1"}))
    wait(executor, backend_id, ExecState.COMPLETED)
    env = json.loads(read(executor.log_paths(backend_id)[0]))
    assert env["AIF_JOB_ID"] == "ident" and env["AIF_ATTEMPT"] == "3"
    assert env["MINE"] == "1" and env["PATH"] == os.environ["PATH"]
    assert "AIF_DATABASE_URL" not in env


def test_script_text_runs_under_bash_in_the_working_directory(
    executor: LocalExecutor, wait: Wait, tmp_path: Path
) -> None:
    script = 'echo "sum=$((1 + 2)) foo=$FOO"\npwd\n'
    spec = ExecJob(job_id="script", script=script, env={"FOO": "bar"}, workdir=str(tmp_path))
    backend_id = executor.submit(spec)
    wait(executor, backend_id, ExecState.COMPLETED)
    assert read(executor.log_paths(backend_id)[0]) == f"sum=3 foo=bar\n{tmp_path}\n"


def test_explicit_log_paths_are_used(executor: LocalExecutor, wait: Wait, tmp_path: Path) -> None:
    out, err = tmp_path / "logs" / "o.txt", tmp_path / "logs" / "e.txt"
    spec = py("print('x')", stdout_path=str(out), stderr_path=str(err))
    wait(executor, executor.submit(spec), ExecState.COMPLETED)
    assert read(out) == "x\n" and read(err) == ""


def test_job_asking_for_more_gpus_than_the_site_has_is_invalid(executor: LocalExecutor) -> None:
    with pytest.raises(Invalid) as err:
        executor.submit(py("pass", nodes=2, gpus_per_node=4))
    assert err.value.details[0].field == "gpus_per_node"


def test_unknown_ids_are_absent_from_poll_and_not_found_elsewhere(
    executor: LocalExecutor,
) -> None:
    assert executor.poll(["nope.1", "../../etc.1"]) == {}
    with pytest.raises(NotFound):
        executor.cancel("nope.1")
    with pytest.raises(NotFound):
        executor.usage("nope.1")


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [("constraint", "a100&ib", "node features"), ("run_as", "anna", "job user")],
)
def test_requests_this_host_cannot_honour_are_invalid_naming_the_field(
    executor: LocalExecutor, field: str, value: str, rule: str
) -> None:
    with pytest.raises(Invalid) as err:
        executor.submit(py("pass", **{field: value}))
    assert err.value.details[0].field == field and rule in str(err.value)
    assert not (executor.state_dir / "jobs" / "j1.1").exists()  # nothing was recorded


def test_an_exclusive_job_starts_alone_and_nothing_starts_beside_it(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir, gpus=4, kill_grace_s=0.5)
    first = ex.submit(holder.job("first", gpus=1))
    wait(ex, first, ExecState.RUNNING)
    spec = holder.job("alone", gpus=1)
    alone = ex.submit(ExecJob(**{**spec.as_dict(), "exclusive": True}))
    later = ex.submit(holder.job("later", gpus=0))
    assert {s.state for s in ex.poll([alone, later]).values()} == {ExecState.QUEUED}
    holder.release("first")
    wait(ex, alone, ExecState.RUNNING)
    assert ex.poll([later])[later].state is ExecState.QUEUED  # FIFO behind it, then blocked
    holder.release("alone")
    wait(ex, alone, ExecState.COMPLETED)
    holder.release("later")
    wait(ex, later, ExecState.COMPLETED)


def test_array_tasks_and_cpu_requests_are_told_to_the_job_and_unenforced_ones_noted(
    executor: LocalExecutor, wait: Wait
) -> None:
    code = (
        "import os; print(os.environ['SLURM_ARRAY_TASK_ID'], os.environ['SLURM_ARRAY_JOB_ID'], "
        "os.environ['SLURM_CPUS_PER_TASK'])"
    )
    spec = py(code, env={"AIF_ARRAY_ID": "41"}, array_task=3, cpus_per_task=2, memory_mb=512)
    backend_id = executor.submit(spec)
    wait(executor, backend_id, ExecState.COMPLETED)
    stdout, stderr = executor.log_paths(backend_id)
    assert read(stdout) == "3 41 2\n"
    assert "cpus_per_task=2, memory_mb=512: recorded, not enforced" in read(stderr)


def test_a_script_with_an_interpreter_line_runs_under_it_with_its_arguments(
    executor: LocalExecutor, wait: Wait
) -> None:
    script = f"#!{sys.executable}\nimport sys\nprint(sys.argv[1:])\n"
    backend_id = executor.submit(ExecJob(job_id="s", script=script, args=["a b", "*"]))
    wait(executor, backend_id, ExecState.COMPLETED)
    assert read(executor.log_paths(backend_id)[0]) == "['a b', '*']\n"
