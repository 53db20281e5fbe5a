"""The local executor learns of changes from events: idle polls read no job's records, wrappers
sleep until a signal or a deadline, and every instance on a state directory sees every change."""

from __future__ import annotations

import builtins
import io
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from exechelpers import Holder, Wait, gone

from aifactory.executors import ExecJob, ExecState, LocalExecutor, _changes, _wrapper

SLEEP = shutil.which("sleep") or "/bin/sleep"
# Code of a job that tells, in its output, that it got SIGTERM (then exits as asked).
TRAP = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    print('got SIGTERM', flush=True); sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "print('ready', flush=True)\n"
    "time.sleep(120)\n"
)


def quiet(ex: LocalExecutor) -> LocalExecutor:
    """``ex``, never looking for unannounced changes: it can learn of a change only by events."""
    ex.liveness_check_s = math.inf
    return ex


def records(ex: LocalExecutor, backend_id: str, name: str) -> dict[str, Any]:
    return dict(json.loads((ex.state_dir / "jobs" / backend_id / name).read_text()))


def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait for progress (the timeout only turns a hang into a failure)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


def most_wakeups(exit_record: dict[str, Any]) -> int:
    """Wake-ups a wrapper may have had: the job's end, a signal, and one per cancel-file look."""
    ran = exit_record["ended_at"] - exit_record["started_at"]
    return 3 + int(ran / _wrapper.RECHECK_S)


@contextmanager
def file_system_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path this process opens, stats or lists while the block runs."""
    calls: list[str] = []
    with monkeypatch.context() as patch:
        for module, name in [(os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"),
                             (os, "scandir"), (io, "open"), (builtins, "open")]:  # fmt: skip
            real = getattr(module, name)

            def counted(path: Any = ".", *args: Any, _real: Any = real, **kw: Any) -> Any:
                calls.append(os.fspath(path) if not isinstance(path, int) else f"fd {path}")
                return _real(path, *args, **kw)

            patch.setattr(module, name, counted)
        yield calls


def test_a_poll_with_nothing_changed_reads_no_job_records_however_many_run(
    executor: LocalExecutor, wait: Wait, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = quiet(executor)
    ids = [ex.submit(ExecJob(job_id=f"idle{i}", argv=[SLEEP, "120"])) for i in range(25)]
    for backend_id in ids:
        wait(ex, backend_id, ExecState.RUNNING)
    events = ex.state_dir / "events"
    until(lambda: bool(ex.poll(ids)) and not os.listdir(events), "the wrappers' last events")
    with file_system_calls(monkeypatch) as calls:
        for _ in range(3):
            statuses = ex.poll(ids)
    assert {s.state for s in statuses.values()} == {ExecState.RUNNING}
    per_job = [c for c in calls if "/jobs/" in c or c.startswith("/proc")]
    assert per_job == []
    assert len(calls) <= 3 * 3, calls  # the lock, the events folder, the journal


def test_the_end_of_a_job_is_seen_by_the_next_poll_after_its_wrapper_recorded_it(
    executor: LocalExecutor, holder: Holder, wait: Wait
) -> None:
    ex = quiet(executor)
    backend_id = ex.submit(holder.job("ends"))
    wait(ex, backend_id, ExecState.RUNNING)
    wrapper = records(ex, backend_id, "state.json")["wrapper_pid"]
    holder.release("ends")
    until(lambda: gone(wrapper), "the wrapper to record the end and exit")
    status = ex.poll([backend_id])[backend_id]
    assert (status.state, status.exit_code) == (ExecState.COMPLETED, 0)


def test_a_queued_job_starts_once_the_running_one_ends(
    state_dir: Path, holder: Holder, wait: Wait, executor: LocalExecutor
) -> None:
    ex = quiet(LocalExecutor(state_dir, gpus=1, kill_grace_s=0.5))
    first = ex.submit(holder.job("first", gpus=1))
    second = ex.submit(holder.job("second", gpus=1))
    wait(ex, first, ExecState.RUNNING)
    assert ex.poll([second])[second].state is ExecState.QUEUED
    holder.release("first")
    wait(ex, second, ExecState.RUNNING)
    assert ex.poll([first])[first].state is ExecState.COMPLETED
    holder.release("second")
    wait(ex, second, ExecState.COMPLETED)


def test_cancel_wakes_the_wrapper_which_sends_the_job_sigterm(
    executor: LocalExecutor, wait: Wait
) -> None:
    backend_id = executor.submit(ExecJob(job_id="trap", argv=[sys.executable, "-c", TRAP]))
    stdout = executor.log_paths(backend_id)[0]
    until(lambda: stdout.exists() and "ready" in stdout.read_text(), "the job to be ready")
    executor.cancel(backend_id)
    assert wait(executor, backend_id, ExecState.CANCELLED).exit_code == 0
    assert stdout.read_text() == "ready\ngot SIGTERM\n"
    exit_record = records(executor, backend_id, "exit.json")
    assert exit_record["wakeups"] <= most_wakeups(exit_record)


def test_the_wrapper_reacts_to_the_signal_alone(executor: LocalExecutor, wait: Wait) -> None:
    backend_id = executor.submit(ExecJob(job_id="signal", argv=[SLEEP, "120"]))
    wait(executor, backend_id, ExecState.RUNNING)
    os.kill(records(executor, backend_id, "state.json")["wrapper_pid"], signal.SIGTERM)
    assert wait(executor, backend_id, ExecState.CANCELLED, timeout=30).exit_code == 128 + 15


def test_a_cancel_whose_signal_was_lost_is_found_by_the_wrappers_slow_look(
    executor: LocalExecutor, wait: Wait
) -> None:
    executor.cancel_recheck_s = 0.2  # instead of every few seconds, so the test is quick
    backend_id = executor.submit(ExecJob(job_id="lost-signal", argv=[SLEEP, "120"]))
    wait(executor, backend_id, ExecState.RUNNING)
    (executor.state_dir / "jobs" / backend_id / "cancel").touch()  # no SIGTERM follows
    assert wait(executor, backend_id, ExecState.CANCELLED, timeout=30).exit_code == 128 + 15


def test_waiting_wrappers_wake_only_for_the_end_of_their_job(
    executor: LocalExecutor, holder: Holder, wait: Wait
) -> None:
    ids = [executor.submit(holder.job(f"w{i}")) for i in range(5)]
    for backend_id in ids:
        wait(executor, backend_id, ExecState.RUNNING)
    for i in range(5):
        holder.release(f"w{i}")
    for backend_id in ids:
        wait(executor, backend_id, ExecState.COMPLETED)
        exit_record = records(executor, backend_id, "exit.json")
        assert 1 <= exit_record["wakeups"] <= most_wakeups(exit_record)


def test_a_wrapper_killed_outright_is_found_without_any_event(
    executor: LocalExecutor, holder: Holder, wait: Wait
) -> None:
    executor.liveness_check_s = 0.2
    backend_id = executor.submit(holder.job("killed"))
    wait(executor, backend_id, ExecState.RUNNING)
    os.kill(records(executor, backend_id, "state.json")["wrapper_pid"], signal.SIGKILL)
    status = wait(executor, backend_id, ExecState.NODE_FAILED)
    assert "wrapper died" in status.message


def test_the_time_limit_holds_with_no_executor_alive(
    state_dir: Path, executor: LocalExecutor
) -> None:
    ex = LocalExecutor(state_dir, kill_grace_s=0.5)
    backend_id = ex.submit(ExecJob(job_id="limited", argv=[SLEEP, "120"], time_limit_s=0.5))
    del ex  # nobody polls
    exit_file = state_dir / "jobs" / backend_id / "exit.json"
    until(exit_file.exists, "the wrapper to end the job at its time limit")
    status = LocalExecutor(state_dir).poll([backend_id])[backend_id]
    assert (status.state, status.exit_code) == (ExecState.TIMED_OUT, 128 + 15)


@pytest.mark.parametrize("journal_max", [_changes.JOURNAL_MAX, 1])
def test_two_instances_on_one_state_directory_see_each_others_changes(
    state_dir: Path,
    holder: Holder,
    wait: Wait,
    executor: LocalExecutor,
    monkeypatch: pytest.MonkeyPatch,
    journal_max: int,
) -> None:
    monkeypatch.setattr(_changes, "JOURNAL_MAX", journal_max)  # 1: a new journal every time
    a = quiet(LocalExecutor(state_dir, gpus=1, kill_grace_s=0.5))
    b = quiet(LocalExecutor(state_dir, gpus=1, kill_grace_s=0.5))
    first = a.submit(holder.job("first", gpus=1))
    second = a.submit(holder.job("second", gpus=1))
    wait(b, first, ExecState.RUNNING)
    assert b.poll([second])[second].state is ExecState.QUEUED
    holder.release("first")
    wait(b, second, ExecState.RUNNING)  # b saw the end, and started the next job
    assert {s.state for s in a.poll([first, second]).values()} == {
        ExecState.COMPLETED,
        ExecState.RUNNING,
    }
    until(lambda: holder.run_count() == 2, "the second job to run")
    a.cancel(second)
    wait(b, second, ExecState.CANCELLED)
    assert a.recover() == b.recover() == []
    assert holder.run_count() == 2  # each job ran once, whichever instance started it
