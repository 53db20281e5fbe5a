"""Helpers for the multi-process controller tests: subprocesses of `aif`, one test's world.

``Fleet`` starts the real entry points as subprocesses and SIGKILLs whatever is left of them
when the test ends; ``World`` is one test's federation on the module's PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import ControllerBeat, Factory, Job, Lease
from aifactory.db.types import utcnow
from aifactory.db.wake import site_topic
from aifactory.settings import Settings
from aifactory.testing.jobs import PY, wait_for
from aifactory.testing.people import Person

AIF = str(Path(sys.executable).parent / "aif")
LUMI = "LUMI AIF"


@dataclass
class Proc:
    """One subprocess of an `aif` entry point; its output goes to ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


class Fleet:
    """Starts `aif ...` subprocesses in their own process groups and kills them all at the end.

    Jobs started by the local executor run in sessions of their own (as they would on a real
    scheduler), so killing a controller here never kills the jobs it handed over.
    """

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base, self.env = base, env
        self.procs: list[Proc] = []
        (base / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, *args: str, **env: str) -> Proc:
        log = self.base / "logs" / f"{len(self.procs):03d}-{name}.log"
        handle = log.open("wb")
        popen = subprocess.Popen(
            [AIF, *args],
            cwd=self.base,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log, handle)
        self.procs.append(proc)
        return proc

    def controller(self, *args: str, **env: str) -> Proc:
        return self.start("controller", "controller", *args, **env)

    def kill(self, proc: Proc) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up runs in the process."""
        if proc.alive:
            os.kill(proc.pid, signal.SIGKILL)
        proc.popen.wait(timeout=60)

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # uvicorn's workers too
            try:
                proc.popen.wait(timeout=60)
            finally:
                proc.handle.close()

    def wait(
        self,
        done: Callable[[], bool],
        what: str,
        *,
        progress: Callable[[], Hashable] | None = None,
        watch: Iterable[Proc] = (),
        stall: float = 60.0,
    ) -> None:
        """Wait until ``done()``; fail when nothing moved for ``stall`` s or a watched one died.

        What moves is ``progress()``, by default the size of every process's output.
        """
        watched = list(watch)

        def check_alive() -> None:
            for p in watched:
                if not p.alive:
                    raise AssertionError(
                        f"{p.name} (pid {p.pid}) exited with {p.popen.returncode} while waiting "
                        f"for {what}:\n{p.tail()}"
                    )

        def output() -> Hashable:
            return tuple(p.log.stat().st_size for p in self.procs)

        wait_for(done, progress or output, stall=stall, step=0.05, between=check_alive, what=what)

    def report(self, lines: int = 25) -> str:
        """The end of every process's output (printed at teardown; pytest shows it on failure)."""
        return "\n".join(
            f"--- {p.name} pid {p.pid} rc {p.popen.returncode} ({p.log}):\n{p.tail(lines)}"
            for p in self.procs
        )


def base_env(data_dir: Path, config_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of every subprocess: this one's, minus any AIF_* the caller had set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(
        AIF_DATA_DIR=str(data_dir),
        AIF_CONFIG_DIR=str(config_dir),
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


@dataclass
class World:
    """One test's federation on PostgreSQL: settings, database, people, an award on LUMI AIF."""

    settings: Settings
    db: Database
    fleet: Fleet
    runs_file: Path  # every job appends "<AIF_JOB_ID> <AIF_ATTEMPT>" here
    anna: Person
    lumi_project: str

    def use(self, ttl_s: float, **extra: str) -> Fleet:
        """Point the fleet's processes at this database, with a lease time of ``ttl_s``."""
        self.fleet.env = base_env(
            self.settings.data_dir,
            self.fleet.base / "config",
            AIF_DATABASE_URL=self.settings.effective_database_url,
            AIF_LEASE_TTL_S=str(ttl_s),
            **extra,
        )
        return self.fleet

    def job(self, project: str) -> dict[str, object]:
        """A small job that records its run, then takes long enough (0.6 s) to be charged."""
        script = (
            "import os, time\n"
            f"with open({str(self.runs_file)!r}, 'a') as f:\n"
            "    f.write(os.environ['AIF_JOB_ID'] + ' ' + os.environ['AIF_ATTEMPT'] + '\\n')\n"
            "time.sleep(0.6)\n"
        )
        return {
            "name": "once",
            "project": project,
            "command": [PY, "-c", script],
            "resources": {"nodes": 1, "gpus_per_node": 1, "time_limit": 120},
        }

    def runs(self) -> list[tuple[str, int]]:
        """(AIF_JOB_ID, AIF_ATTEMPT) of every run so far, in the order they wrote."""
        if not self.runs_file.exists():
            return []
        return [(i, int(a)) for i, a in map(str.split, self.runs_file.read_text().splitlines())]

    def runs_by_job(self) -> dict[int, list[int]]:
        """Job id -> the attempts that ran (AIF_JOB_ID is the control plane's job id)."""
        seen: dict[int, list[int]] = {}
        for job_id, attempt in self.runs():
            seen.setdefault(int(job_id), []).append(attempt)
        return seen

    def site_lease(self, factory: str) -> str:
        with self.db.session() as s:
            return site_topic(s.scalars(select(Factory.id).where(Factory.name == factory)).one())

    def holders(self) -> dict[str, str]:
        """Lease name -> holder, for the leases that have not expired."""
        now = utcnow()
        with self.db.session() as s:
            rows = s.execute(select(Lease.name, Lease.holder, Lease.expires_at)).all()
        return {name: holder for name, holder, expires in rows if expires > now}

    def tokens(self) -> dict[str, int]:
        with self.db.session() as s:
            return dict(s.execute(select(Lease.name, Lease.token)).all())

    def holder_of(self, proc: Proc) -> str | None:
        """The name a controller process holds leases under (its heartbeat row), once started."""
        with self.db.session() as s:
            query = select(ControllerBeat.holder).where(ControllerBeat.pid == proc.pid)
            return s.scalars(query).first()

    def states(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(select(Job.state, func.count()).group_by(Job.state)).all()
        return dict(rows)
