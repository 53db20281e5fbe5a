"""Supervisor of one local job: ``python -m aifactory.executors._wrapper JOBDIR``.

The local executor never runs a job directly: it starts this wrapper in a new session, and the
wrapper starts the job in a session of its own. Keeping the two apart is what lets the wrapper
SIGKILL the job's whole process group (grandchildren included) and still live to record the
outcome, and what lets a job outlive a crash of the server and still have its exit code found
by the next executor instance. No shell is involved anywhere: argv comes from ``launch.json``.

While the job runs the wrapper sleeps in ``select`` and uses no CPU: it wakes when the job ends
(SIGCHLD), when the executor asks for a cancel (SIGTERM, after creating the ``cancel`` file),
at the time limit and at the end of the kill grace. Should a signal get lost, a look at the
``cancel`` file every ``cancel_recheck_s`` (default ``RECHECK_S``) makes up for it. After each
change to its records the wrapper creates the attempt's event (``_jobdir.note``), so executors
re-read only what changed.

The wrapper stays the service user, with an environment of a few harmless variables: it writes
the records the job must not forge, in a directory the job cannot reach. Only the job switches
to the job user (``launch.json``'s ``uid``), after the wrapper has made its home and opened its
logs (``_jobfs``); a process of another user cannot read the wrapper's or the server's
``/proc/PID/environ``, nor signal them.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import subprocess
import sys
import time
from io import BufferedWriter
from pathlib import Path
from typing import Any

from aifactory.executors import _jobdir as jd
from aifactory.executors import _jobfs

RECHECK_S = 10.0  # how often the wrapper looks at the cancel file, in case a signal was lost


class _Wake:
    """Sleeps until a signal or a deadline; SIGTERM (the executor's cancel) sets ``stop``.

    Signal handlers in Python run only between bytecodes, so a signal would not end a sleep in
    ``select`` by itself; ``signal.set_wakeup_fd`` makes the C handler write to a pipe the
    sleep watches. Created before the job starts, so no SIGCHLD is missed.
    """

    def __init__(self) -> None:
        self.stop = False
        self.count = 0  # wake-ups while supervising, kept in exit.json (a test checks them)
        self._pipe, write = os.pipe()  # not inherited by the job (O_CLOEXEC)
        for fd in (self._pipe, write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._stopped)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def _stopped(self, signum: int, frame: object) -> None:
        self.stop = True

    def sleep(self, until: float) -> None:
        """Sleep until the monotonic time ``until`` (``inf``: no limit) or the next signal."""
        self.count += 1
        timeout = None if until == math.inf else max(0.0, until - time.monotonic())
        select.select([self._pipe], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._pipe, 512):
                pass


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, sig)


def _record(jobdir: Path, outcome: str, **fields: Any) -> None:
    record: dict[str, Any] = {"outcome": outcome, "exit_code": None, "signal": None}
    record.update(started_at=None, ended_at=time.time(), message="")
    record.update(fields)
    jd.write_json(jobdir / jd.EXIT, record)
    jd.note(jobdir)


def _write_state(jobdir: Path, state: dict[str, Any]) -> None:
    jd.write_json(jobdir / jd.STATE, state)
    jd.note(jobdir)


def _supervise(
    proc: subprocess.Popen[bytes], jobdir: Path, launch: dict[str, Any], wake: _Wake
) -> str:
    """Wait for the job, enforcing cancel and time limit: SIGTERM the group, SIGKILL later."""
    now = time.monotonic()
    limit = launch.get("time_limit_s")
    deadline = now + limit if limit is not None else math.inf
    grace = float(launch.get("kill_grace_s", 10.0))
    recheck = float(launch.get("cancel_recheck_s", RECHECK_S))
    outcome, kill_at, recheck_at = None, math.inf, now + recheck
    while proc.poll() is None:
        now = time.monotonic()
        if outcome is None:
            if now >= recheck_at:
                wake.stop = wake.stop or (jobdir / jd.CANCEL).exists()
                recheck_at = now + recheck
            if wake.stop or now >= deadline:
                outcome = jd.CANCELLED if wake.stop else jd.TIMED_OUT
                _killpg(proc.pid, signal.SIGTERM)
                kill_at = now + grace
        elif now >= kill_at:
            _killpg(proc.pid, signal.SIGKILL)
            kill_at = math.inf  # now only its end (SIGCHLD) is left to wait for
        wake.sleep(min(deadline, recheck_at) if outcome is None else kill_at)
    return outcome or jd.EXITED


def _open_log(path: str, jobdir: Path, home: _jobfs.Home, home_fd: int) -> BufferedWriter:
    """Open a log for appending: in the records directly, in the job's home without races."""
    where = Path(path)
    if home.uid is None or where.parent == jobdir or not where.is_relative_to(home.path):
        where.parent.mkdir(parents=True, exist_ok=True)
        return open(where, "ab")  # closed by _start
    return os.fdopen(home.open_append(home_fd, str(where.relative_to(home.path))), "ab")


def _prepare(jobdir: Path, launch: dict[str, Any]) -> tuple[BufferedWriter, BufferedWriter]:
    """Make the job's home, working directory and script, and open its logs."""
    home = _jobfs.Home(Path(launch["home"]), launch.get("uid"), launch.get("gid"))
    _jobfs.ensure_dir(home.path.parent, launch["homes_mode"])
    cwd = Path(launch["cwd"])
    with home.opened() as home_fd:
        if cwd.is_relative_to(home.path):
            os.close(home.makedirs(home_fd, str(cwd.relative_to(home.path))))
        if launch.get("script") is not None:
            home.write_new(home_fd, launch["script_name"], launch["script"], 0o700)
        out = _open_log(launch["stdout"], jobdir, home, home_fd)
        try:
            err = _open_log(launch["stderr"], jobdir, home, home_fd)
        except BaseException:
            out.close()
            raise
    return out, err


def _as_job_user(launch: dict[str, Any]) -> dict[str, Any]:
    """Popen arguments that drop to the job user (no groups of ours, private new files)."""
    if launch.get("uid") is None:
        return {"umask": launch["umask"]}
    return {"user": launch["uid"], "group": launch["gid"], "extra_groups": [], "umask": 0o077}


def _start(jobdir: Path, launch: dict[str, Any]) -> subprocess.Popen[bytes] | None:
    """Start the job in its own session; on failure record it like a shell would (126/127)."""
    try:
        out, err = _prepare(jobdir, launch)
    except OSError as exc:
        message = f"cannot prepare the job's directory: {exc}"
        _record(jobdir, jd.EXITED, exit_code=126, started_at=time.time(), message=message)
        return None
    try:
        for note in launch.get("notes", ()):
            err.write(f"aifactory: note: {note}\n".encode())
        err.flush()
        # S603: argv is a list executed without a shell; nothing is interpreted.
        return subprocess.Popen(  # noqa: S603
            launch["argv"],
            env=launch["env"],
            cwd=launch["cwd"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            close_fds=True,
            **_as_job_user(launch),
        )
    except OSError as exc:
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        message = str(exc)
        if isinstance(exc, PermissionError) and launch.get("user"):
            message += f" (the job runs as {launch['user']}, which cannot read or reach it)"
        err.write(f"aifactory: cannot start job: {message}\n".encode())
        _record(jobdir, jd.EXITED, exit_code=code, started_at=time.time(), message=message)
        return None
    finally:
        out.close()
        err.close()


def run(jobdir: Path) -> int:
    """Run the job described by ``jobdir/launch.json`` once; returns the wrapper's exit status."""
    # Records and logs are the service user's alone; a job of the same user keeps its umask.
    launch_umask = os.umask(0o077)
    # Only one wrapper may ever run a job, even if an executor launches it twice after a crash.
    if not jd.touch_exclusive(jobdir / jd.CLAIMED):
        return 0
    wake = _Wake()  # before state.json: the executor signals only a wrapper that recorded itself
    launch = jd.read_json(jobdir / jd.LAUNCH)
    if launch is None:
        return 2
    me = {"wrapper_pid": os.getpid(), "wrapper_start": jd.process_start_time(os.getpid())}
    _write_state(jobdir, me)
    if (jobdir / jd.EXIT).exists():
        return 0  # the executor gave up on this launch already
    if wake.stop or (jobdir / jd.CANCEL).exists():
        _record(jobdir, jd.CANCELLED, message="cancelled before start")
        return 0
    started_at = time.time()
    proc = _start(jobdir, {"umask": launch_umask, **launch})
    if proc is None:
        return 0
    _write_state(jobdir, {**me, "child_pid": proc.pid, "started_at": started_at})
    outcome = _supervise(proc, jobdir, launch, wake)
    # Background processes the job left behind die with it, as under Slurm's cgroups.
    _killpg(proc.pid, signal.SIGKILL)
    code = proc.returncode
    sig = -code if code < 0 else None
    _record(
        jobdir,
        outcome,
        exit_code=128 + sig if sig is not None else code,
        signal=sig,
        started_at=started_at,
        wakeups=wake.count,
    )
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
