"""Helpers for job tests: drive the agents until a condition holds, on either database backend.

Waits are on progress, not on the clock: a loaded machine makes a test slower, never failing.
A wait fails when nothing has moved for ``stall`` seconds (or after a generous ``ceiling``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from aifactory.agents.runner import AgentRunner
from aifactory.db.engine import Database
from aifactory.db.models import Job, JobAttempt
from aifactory.settings import Settings
from aifactory.testing import databases

PY = sys.executable
BACKENDS = ("sqlite", "postgresql")
#: Seconds without any progress after which a wait gives up.
STALL_S = 60.0
#: Seconds after which a wait gives up even while things still move (a livelock, a busy loop).
CEILING_S = 900.0


def _log_size(path: str | None) -> int:
    if not path:
        return -1
    try:
        return Path(path).stat().st_size
    except OSError:
        return -1


def job_progress(db: Database) -> Hashable:
    """What moves while jobs make progress: states, attempts and how much each attempt logged."""
    with db.session() as s:
        jobs = tuple(s.execute(select(Job.id, Job.state, Job.attempt).order_by(Job.id)))
        attempts = tuple(
            (a.job_id, a.attempt, a.state, _log_size(a.stdout_path))
            for a in s.scalars(select(JobAttempt).order_by(JobAttempt.id))
        )
    return (tuple(map(tuple, jobs)), attempts)


def wait_for(
    done: Callable[[], bool],
    progress: Callable[[], Hashable],
    *,
    stall: float = STALL_S,
    ceiling: float = CEILING_S,
    step: float = 0.05,
    between: Callable[[], None] = lambda: None,
    what: str = "condition",
) -> None:
    """Call ``between()`` every ``step`` seconds until ``done()``.

    Fails when ``progress()`` has returned the same value for ``stall`` seconds, or when
    ``ceiling`` seconds have passed in all (the last value is in the message).
    """
    start = last_change = time.monotonic()
    seen = progress()
    while not done():
        now = time.monotonic()
        current = progress()
        if current != seen:
            seen, last_change = current, now
        elif now - last_change > stall:
            raise AssertionError(f"{what} not reached: no progress for {stall:.0f} s; at {seen!r}")
        if now - start > ceiling:
            raise AssertionError(
                f"{what} not reached within the {ceiling:.0f} s ceiling; at {seen!r}"
            )
        between()
        time.sleep(step)


def run_until(
    runner: AgentRunner,
    done: Callable[[], bool],
    stall: float = STALL_S,
    step: float = 0.05,
    *,
    progress: Callable[[], Hashable] | None = None,
    timeout: float | None = None,
    ceiling: float = CEILING_S,
) -> None:
    """Tick the broker and site agents until ``done()``.

    Fails only when ``progress()`` (by default :func:`job_progress` of the runner's database:
    every job's state and attempt, every attempt's state and log size) has not changed for
    ``stall`` seconds, or after ``ceiling`` seconds in all. ``timeout`` is the former name of
    ``stall`` and means the same.
    """
    if timeout is not None:
        stall = timeout
    db: Database = runner.db
    wait_for(
        done,
        progress or (lambda: job_progress(db)),
        stall=stall,
        ceiling=ceiling,
        step=step,
        between=runner.tick,
        what="job condition",
    )


def run_watched(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: dict[str, str] | None = None,
    stall: float = 120.0,
    ceiling: float = CEILING_S,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end, reading stdout and stderr line by line as they come.

    Unlike ``subprocess.run(timeout=...)`` it fails only when the process stops making
    progress: when neither stream printed a line for ``stall`` seconds (or after ``ceiling``
    seconds in all), it kills the process's group and raises with the output so far.
    """
    proc = subprocess.Popen(  # noqa: S603 (argv from the test, no shell)
        [str(a) for a in argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a stalled run is killed with its children
    )
    streams: dict[str, list[str]] = {"stdout": [], "stderr": []}
    last = [time.monotonic()]

    def pump(name: str, pipe: Any) -> None:
        for line in pipe:
            streams[name].append(line)
            last[0] = time.monotonic()

    readers = [
        threading.Thread(target=pump, args=(name, pipe), daemon=True)
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    start = time.monotonic()
    while proc.poll() is None:
        quiet, running = time.monotonic() - last[0], time.monotonic() - start
        if quiet > stall or running > ceiling:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            why = f"silent for {quiet:.0f} s" if quiet > stall else f"past {ceiling:.0f} s"
            tail = "".join(streams["stdout"])[-3000:] + "".join(streams["stderr"])[-3000:]
            raise AssertionError(f"{argv[0]} {why}; killed. Output so far:\n{tail}")
        time.sleep(0.2)
    for reader in readers:
        reader.join(timeout=stall)  # a left-over child may hold the pipes open
    out, err = ("".join(streams[name]) for name in ("stdout", "stderr"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@contextmanager
def backend_database(
    backend: str, settings: Settings, postgres: Callable[[], Database]
) -> Iterator[Database]:
    """An empty, migrated database on ``backend``, for fixtures wider than one test.

    The same databases as the ``empty_db`` fixture gives: a fresh SQLite file under
    ``settings.data_dir``, or the session's scratch PostgreSQL database (``postgres()``, which
    skips or fails as the ``postgres_db`` fixture does) emptied.
    """
    if backend == "postgresql":
        db = postgres()
        databases.empty(db)
    else:
        db = Database(settings.effective_database_url)
        db.upgrade()
    try:
        yield db
    finally:
        db.dispose()  # closes these connections; the shared PostgreSQL engine reconnects later


def spec(project: str, command: list[str] | str, **extra: Any) -> dict[str, Any]:
    """A small job spec: one GPU, a minute, on the given project."""
    resources = {"nodes": 1, "gpus_per_node": 1, "time_limit": 60, **extra.pop("resources", {})}
    return {
        "name": extra.pop("name", "test-job"),
        "project": project,
        "command": command,
        "resources": resources,
        **extra,
    }
