"""An attempt's records (see ``_jobdir``) read as an ExecStatus, and what a lost one becomes.

Functions of one records directory, so the executor keeps only scheduling and launching. The
caller holds the executor's lock.

The executor keeps what ``read`` returned until an event says the records changed. Two things
change without one, and ``stale`` looks for them: a wrapper that died unannounced (kill -9, a
crash), and a launch whose wrapper never recorded itself (its launcher died first, or the launch
grace ran out).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Seen:
    """An attempt as its records showed it: its status, launch record and wrapper's state."""

    status: ExecStatus
    launch: dict[str, Any] | None = None
    state: dict[str, Any] | None = None


def status(jobdir: Path, launch_grace_s: float) -> ExecStatus:
    """What the records say now; records the loss of an attempt whose supervisor vanished."""
    return read(jobdir, launch_grace_s).status


def read(jobdir: Path, launch_grace_s: float) -> Seen:
    """``status``, with the records it was read from."""
    record = jd.read_json(jobdir / jd.EXIT)
    if record is not None:
        return Seen(from_exit(record))
    launch = jd.read_json(jobdir / jd.LAUNCH)
    if launch is None:
        return Seen(ExecStatus(ExecState.QUEUED))
    state = jd.read_json(jobdir / jd.STATE)
    if state is None:
        starting = time.time() - launch["launched_at"] < launch_grace_s
        if starting or orphaned(jobdir, launch):  # an orphan is started again
            return Seen(ExecStatus(ExecState.QUEUED, message="starting"), launch)
        jd.touch_exclusive(jobdir / jd.CLAIMED)  # a wrapper starting after this will not run
        return Seen(lost(jobdir, None, "the job's wrapper did not start"))
    if jd.process_alive(state["wrapper_pid"], state["wrapper_start"]):
        if "started_at" not in state:
            return Seen(ExecStatus(ExecState.QUEUED, message="starting"), launch, state)
        return Seen(ExecStatus(ExecState.RUNNING, started_at=state["started_at"]), launch, state)
    # The wrapper may have recorded the exit between our two reads.
    record = jd.read_json(jobdir / jd.EXIT)
    if record is not None:
        return Seen(from_exit(record))
    return Seen(lost(jobdir, state, "the job's wrapper died without recording an exit code"))


def stale(jobdir: Path, seen: Seen, launch_grace_s: float) -> bool:
    """Whether an unfinished attempt may have changed without an event (see above)."""
    if seen.state is not None:
        return not jd.process_alive(seen.state["wrapper_pid"], seen.state["wrapper_start"])
    if seen.launch is None:
        return False  # queued: only executors change it, and they note it
    expired = time.time() - seen.launch["launched_at"] >= launch_grace_s
    return expired or orphaned(jobdir, seen.launch)


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
    jd.note(jobdir)
    return from_exit(record)
