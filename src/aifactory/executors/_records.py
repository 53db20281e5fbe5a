"""An attempt's records (see ``_jobdir``) read as an ExecStatus, and what a lost one becomes.

Pure functions of one records directory, so the executor keeps only scheduling and launching.
The caller holds the executor's lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

from aifactory.executors import _jobdir as jd
from aifactory.executors.base import ExecState, ExecStatus

_OUTCOMES = {
    jd.CANCELLED: ExecState.CANCELLED,
    jd.TIMED_OUT: ExecState.TIMED_OUT,
    jd.NODE_FAILED: ExecState.NODE_FAILED,
}


def launcher() -> dict[str, Any]:
    """Who launches a wrapper, and when: a later process relaunches it if this one dies first."""
    pid = os.getpid()
    return {
        "launched_at": time.time(),
        "launcher_pid": pid,
        "launcher_start": jd.process_start_time(pid),
    }


def from_exit(record: dict[str, Any]) -> ExecStatus:
    """The status an ``exit.json`` record stands for."""
    outcome, code = record["outcome"], record.get("exit_code")
    state = _OUTCOMES.get(outcome)
    if state is None:
        state = ExecState.COMPLETED if code == 0 else ExecState.FAILED
    return ExecStatus(
        state=state,
        exit_code=code,
        started_at=record.get("started_at"),
        ended_at=record.get("ended_at"),
        message=record.get("message", ""),
    )


def orphaned(jobdir: Path, launch: dict[str, Any]) -> bool:
    """Launched by a process that died before its wrapper started (and nobody claimed it)."""
    pid = launch.get("launcher_pid")
    if pid is None or pid == os.getpid() or (jobdir / jd.STATE).exists():
        return False
    if (jobdir / jd.CLAIMED).exists() or (jobdir / jd.EXIT).exists():
        return False
    return not jd.process_alive(pid, launch.get("launcher_start"))


def status(jobdir: Path, launch_grace_s: float) -> ExecStatus:
    """What the records say now; records the loss of an attempt whose supervisor vanished."""
    record = jd.read_json(jobdir / jd.EXIT)
    if record is not None:
        return from_exit(record)
    launch = jd.read_json(jobdir / jd.LAUNCH)
    if launch is None:
        return ExecStatus(ExecState.QUEUED)
    state = jd.read_json(jobdir / jd.STATE)
    if state is None:
        starting = time.time() - launch["launched_at"] < launch_grace_s
        if starting or orphaned(jobdir, launch):  # an orphan is started again
            return ExecStatus(ExecState.QUEUED, message="starting")
        jd.touch_exclusive(jobdir / jd.CLAIMED)  # a wrapper starting after this will not run
        return lost(jobdir, None, "the job's wrapper did not start")
    if jd.process_alive(state["wrapper_pid"], state["wrapper_start"]):
        if "started_at" not in state:
            return ExecStatus(ExecState.QUEUED, message="starting")
        return ExecStatus(ExecState.RUNNING, started_at=state["started_at"])
    # The wrapper may have recorded the exit between our two reads.
    record = jd.read_json(jobdir / jd.EXIT)
    if record is not None:
        return from_exit(record)
    return lost(jobdir, state, "the job's wrapper died without recording an exit code")


def lost(jobdir: Path, state: dict[str, Any] | None, why: str) -> ExecStatus:
    """Record an attempt whose supervisor vanished (e.g. the host rebooted)."""
    child = state.get("child_pid") if state else None
    if child is not None:
        # Nobody could report on the job any more, so it must not keep running unseen.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(child, signal.SIGKILL)
    outcome = jd.CANCELLED if (jobdir / jd.CANCEL).exists() else jd.NODE_FAILED
    started = state.get("started_at") if state else None
    record = {"outcome": outcome, "started_at": started, "ended_at": time.time()}
    record["message"] = why
    jd.write_json(jobdir / jd.EXIT, record)
    return from_exit(record)
