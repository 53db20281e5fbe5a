"""The local executor: the embedded default's stand-in for a site scheduler.

A fixed pool of virtual GPUs; each job attempt runs as a child process group on this machine
with ``CUDA_VISIBLE_DEVICES`` naming the GPU indices it was granted. Jobs that do not fit the
free GPUs wait in a strict FIFO queue (a large job at the head is never overtaken, so it cannot
starve). The executor has no thread of its own: queued jobs start during ``submit``, ``poll``,
``cancel`` and ``recover`` calls, which the site agent makes every tick anyway; time limits and
cancels are enforced by each job's wrapper process (see ``_wrapper``), so they hold even while
no executor is alive.

All state lives in ``state_dir`` (see ``_jobdir`` for the files), guarded by an ``flock`` so
several executor instances, in one process or several, can share it. That makes the executor
crash-safe: a new instance on the same directory sees every job the old one submitted, and
``submit`` is idempotent per ``(job_id, attempt)`` because the backend id is derived from that
key and the job directory records that it was taken.

``launcher="torchrun"`` runs ``python -m torch.distributed.run --standalone --nnodes=1
--nproc_per_node=N`` with N = the job's GPUs, or ``torchrun_cpu_procs`` for a job without GPUs
(then each rank trains on the CPU with the gloo backend). Multi-node requests are run on this
one host with all their GPUs: the local executor simulates nodes, it does not have them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.executors import _jobdir as jd
from aifactory.executors._launch import DEFAULT_ENV_PASSTHROUGH, LaunchRules
from aifactory.executors.base import (
    Capability,
    ExecJob,
    ExecState,
    ExecStatus,
    ExecUsage,
    Executor,
    register,
)

__all__ = ["DEFAULT_ENV_PASSTHROUGH", "LocalExecutor"]

_READABLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_BACKEND_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\.[0-9]{1,9}$")
_OUTCOMES = {
    jd.CANCELLED: ExecState.CANCELLED,
    jd.TIMED_OUT: ExecState.TIMED_OUT,
    jd.NODE_FAILED: ExecState.NODE_FAILED,
}


def _launcher() -> dict[str, Any]:
    """Who launches a wrapper, and when: a later process relaunches it if this one dies first."""
    pid = os.getpid()
    return {
        "launched_at": time.time(),
        "launcher_pid": pid,
        "launcher_start": jd.process_start_time(pid),
    }


def _status_from_exit(record: dict[str, Any]) -> ExecStatus:
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


@register("local")
class LocalExecutor(Executor):
    """Runs job attempts as local process groups on a pool of virtual GPUs.

    Args:
        state_dir: Directory holding one sub-directory per attempt; created if missing.
        gpus: Virtual GPUs in the pool (indices ``0 .. gpus-1``).
        kill_grace_s: Seconds between SIGTERM and SIGKILL on cancel or time limit.
        launch_grace_s: Seconds a launched wrapper may take to record itself before the
            attempt is declared node_failed.
        python: Interpreter for jobs whose argv starts with a bare ``python``/``python3``
            and for torchrun; defaults to the interpreter running the platform, since the
            embedded default has no module system to pick one.
        torchrun_cpu_procs: Processes per torchrun job that asks for no GPUs.
        env_passthrough: Names of the platform's environment variables jobs inherit.
        workdir_base: Base for relative working directories (default: current directory).
    """

    capabilities = frozenset({Capability.GPUS, Capability.TORCHRUN})

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        gpus: int = 0,
        *,
        kill_grace_s: float = 10.0,
        launch_grace_s: float = 30.0,
        python: str | None = None,
        torchrun_cpu_procs: int = 1,
        env_passthrough: Sequence[str] = DEFAULT_ENV_PASSTHROUGH,
        workdir_base: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise Invalid.field("gpus", "min", "must be an integer >= 0")
        if torchrun_cpu_procs < 1:
            raise Invalid.field("torchrun_cpu_procs", "min", "must be >= 1")
        self.gpus = gpus
        self.state_dir = Path(state_dir).resolve()
        self._jobs = self.state_dir / "jobs"
        self._active = self.state_dir / "active"
        for path in (self._jobs, self._active):
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._kill_grace_s = kill_grace_s
        self._launch_grace_s = launch_grace_s
        self._rules = LaunchRules(
            python=python or sys.executable,
            torchrun_cpu_procs=torchrun_cpu_procs,
            env_passthrough=tuple(env_passthrough),
            workdir_base=Path(workdir_base or Path.cwd()).resolve(),
        )
        self._thread_lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._terminal: dict[str, ExecStatus] = {}
        self._specs: dict[str, tuple[int, ExecJob]] = {}

    # ----------------------------------------------------------------- public interface

    @staticmethod
    def backend_id_for(job_id: str, attempt: int) -> str:
        """The backend id ``submit`` gives the attempt ``(job_id, attempt)``."""
        if _READABLE_ID.match(job_id):
            return f"{job_id}.{attempt}"
        # Ids that are not safe as file names are hashed; spec.json records the real key.
        return f"h{hashlib.sha256(job_id.encode()).hexdigest()[:24]}.{attempt}"

    def submit(self, spec: ExecJob) -> str:
        """Queue ``spec`` (idempotent per ``spec.key``) and start it if its GPUs are free.

        Raises:
            Invalid: The job asks for more GPUs than the pool has.
            Conflict: Another key hashed to the same backend id (practically impossible).
        """
        if spec.gpus > self.gpus:
            raise Invalid.field(
                "gpus_per_node", "capacity", f"asks for {spec.gpus} GPUs; this site has {self.gpus}"
            )
        backend_id = self.backend_id_for(spec.job_id, spec.attempt)
        jobdir = self._jobs / backend_id
        existing = jd.read_json(jobdir / jd.SPEC)
        if existing is None:
            # Each attempt has its own directory, so its (fsynced) record is written outside
            # the executor's lock; only the shared queue below needs it.
            jobdir.mkdir(mode=0o700, exist_ok=True)
            record = {"key": list(spec.key), "submitted_ns": time.time_ns(), "spec": spec.as_dict()}
            jd.write_json(jobdir / jd.SPEC, record)
        elif tuple(existing["key"]) != spec.key:
            raise Conflict(f"backend id {backend_id} is taken by {existing['key']}")
        with self._locked():
            if not (jobdir / jd.EXIT).exists():
                (self._active / backend_id).touch()  # a crash may have hit before this
            starts = self._schedule()
        self._start_wrappers(starts)
        return backend_id

    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        """Status of each known id (unknown ids are left out); starts queued jobs that fit."""
        with self._locked():
            self._reap()
            starts = self._schedule()
            statuses = {b: self._status(b) for b in backend_ids if self._known(b)}
        self._start_wrappers(starts)
        return statuses

    def cancel(self, backend_id: str) -> None:
        """Cancel: a queued job never starts; a running one gets SIGTERM, then SIGKILL.

        Raises:
            NotFound: Unknown backend id.
        """
        with self._locked():
            self._require(backend_id)
            if self._status(backend_id).state.terminal:
                return
            jobdir = self._jobs / backend_id
            (jobdir / jd.CANCEL).touch()
            if not (jobdir / jd.LAUNCH).exists():
                jd.write_json(jobdir / jd.EXIT, {"outcome": jd.CANCELLED, "ended_at": time.time()})
                starts = self._schedule()
            else:
                starts = []
                state = jd.read_json(jobdir / jd.STATE)
                # The wrapper also polls the cancel file; the signal only makes it prompt.
                if state and jd.process_alive(state["wrapper_pid"], state["wrapper_start"]):
                    with contextlib.suppress(ProcessLookupError):  # it may have just ended
                        os.kill(state["wrapper_pid"], signal.SIGTERM)
        self._start_wrappers(starts)

    def usage(self, backend_id: str) -> ExecUsage | None:
        """GPUs and seconds used so far; ``None`` if the attempt never started.

        Raises:
            NotFound: Unknown backend id.
        """
        with self._locked():
            self._require(backend_id)
            status = self._status(backend_id)
            spec = self._spec(backend_id)
        if status.started_at is None:
            return None
        end = status.ended_at if status.ended_at is not None else time.time()
        return ExecUsage(gpus=spec.gpus, elapsed_s=max(0.0, end - status.started_at))

    def recover(self) -> list[str]:
        """Adopt the state directory after a restart: the ids of all unfinished attempts.

        Jobs still running keep running (their wrappers never depended on us), finished
        ones report the exit code their wrapper recorded, queued ones start when they fit.
        """
        with self._locked():
            starts = self._schedule()
            active = sorted(b for b in os.listdir(self._active) if self._known(b))
        self._start_wrappers(starts)
        return active

    def log_paths_for(self, spec: ExecJob) -> tuple[str, str] | None:
        """The attempt's log files in its job directory (or the spec's explicit paths)."""
        stdout, stderr = self._rules.logs(spec, self._jobs / self.backend_id_for(*spec.key))
        return str(stdout), str(stderr)

    def log_paths(self, backend_id: str) -> tuple[Path, Path]:
        """Files receiving the attempt's standard output and standard error."""
        with self._locked():
            self._require(backend_id)
            spec = self._spec(backend_id)
        stdout, stderr = self._rules.logs(spec, self._jobs / backend_id)
        return Path(stdout), Path(stderr)

    # ----------------------------------------------------------------- state (lock held)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # The thread lock serialises threads of this process; flock serialises processes.
        with self._thread_lock, (self.state_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _known(self, backend_id: str) -> bool:
        return bool(_BACKEND_ID.match(backend_id)) and (self._jobs / backend_id / jd.SPEC).exists()

    def _require(self, backend_id: str) -> None:
        if not self._known(backend_id):
            raise NotFound(f"no local job {backend_id!r}")

    def _entry(self, backend_id: str) -> tuple[int, ExecJob]:
        entry = self._specs.get(backend_id)
        if entry is None:
            record = jd.read_json(self._jobs / backend_id / jd.SPEC)
            if record is None:
                raise NotFound(f"no local job {backend_id!r}")
            entry = (int(record["submitted_ns"]), ExecJob.from_dict(record["spec"]))
            self._specs[backend_id] = entry
        return entry

    def _spec(self, backend_id: str) -> ExecJob:
        return self._entry(backend_id)[1]

    def _status(self, backend_id: str) -> ExecStatus:
        cached = self._terminal.get(backend_id)
        if cached is not None:
            return cached
        jobdir = self._jobs / backend_id
        status = self._status_on_disk(backend_id, jobdir)
        if status.state.terminal:
            self._terminal[backend_id] = status
        return status

    def _status_on_disk(self, backend_id: str, jobdir: Path) -> ExecStatus:
        record = jd.read_json(jobdir / jd.EXIT)
        if record is not None:
            return _status_from_exit(record)
        launch = jd.read_json(jobdir / jd.LAUNCH)
        if launch is None:
            return ExecStatus(ExecState.QUEUED)
        state = jd.read_json(jobdir / jd.STATE)
        if state is None:
            starting = time.time() - launch["launched_at"] < self._launch_grace_s
            if starting or self._orphaned(jobdir, launch):  # an orphan is started again
                return ExecStatus(ExecState.QUEUED, message="starting")
            jd.touch_exclusive(jobdir / jd.CLAIMED)  # a wrapper starting after this will not run
            return self._lost(jobdir, None, "the job's wrapper did not start")
        if jd.process_alive(state["wrapper_pid"], state["wrapper_start"]):
            if "started_at" not in state:
                return ExecStatus(ExecState.QUEUED, message="starting")
            return ExecStatus(ExecState.RUNNING, started_at=state["started_at"])
        # The wrapper may have recorded the exit between our two reads.
        record = jd.read_json(jobdir / jd.EXIT)
        if record is not None:
            return _status_from_exit(record)
        return self._lost(jobdir, state, "the job's wrapper died without recording an exit code")

    def _lost(self, jobdir: Path, state: dict[str, Any] | None, why: str) -> ExecStatus:
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
        return _status_from_exit(record)

    def _reap(self) -> None:
        # Collect finished wrappers so they do not linger as zombies of this process.
        for backend_id, proc in list(self._procs.items()):
            if proc.poll() is not None:
                del self._procs[backend_id]

    def _schedule(self) -> list[str]:
        """Grant GPUs to queued attempts in submit order while the head of the queue fits.

        Returns the launches to start once the lock is released (their records are written
        here, so the GPUs stay granted; an orphan's wrapper is started again).
        """
        starts: list[str] = []
        busy: set[int] = set()
        queued: list[tuple[int, str]] = []
        for backend_id in os.listdir(self._active):
            if not self._known(backend_id):
                (self._active / backend_id).unlink(missing_ok=True)
                continue
            if self._status(backend_id).state.terminal:
                (self._active / backend_id).unlink(missing_ok=True)
                continue
            launch = jd.read_json(self._jobs / backend_id / jd.LAUNCH)
            if launch is not None:
                busy.update(launch["gpus"])
                if self._orphaned(self._jobs / backend_id, launch):
                    self._record_launch(backend_id, launch)
                    starts.append(backend_id)
            else:
                queued.append((self._entry(backend_id)[0], backend_id))
        free = [i for i in range(self.gpus) if i not in busy]
        for _, backend_id in sorted(queued):
            need = self._spec(backend_id).gpus
            if need > len(free):
                break  # strict FIFO: the head waits for GPUs and nothing overtakes it
            self._launch(backend_id, free[:need])
            starts.append(backend_id)
            free = free[need:]
        return starts

    # ----------------------------------------------------------------- launching

    def _launch(self, backend_id: str, gpus: list[int]) -> None:
        spec = self._spec(backend_id)
        jobdir = self._jobs / backend_id
        cwd = self._rules.workdir(spec, jobdir)
        stdout, stderr = self._rules.logs(spec, jobdir)
        launch = {
            "argv": self._rules.argv(spec, jobdir),
            "env": self._rules.env(spec, backend_id, gpus),
            "cwd": str(cwd),
            "stdout": stdout,
            "stderr": stderr,
            "time_limit_s": spec.time_limit_s,
            "kill_grace_s": self._kill_grace_s,
            "gpus": gpus,
        }
        self._record_launch(backend_id, launch)

    def _record_launch(self, backend_id: str, launch: dict[str, Any]) -> None:
        """Write the launch record (lock held) before any wrapper starts: the GPUs stay granted
        if we crash next, and the launcher's pid lets the next process start the wrapper."""
        jd.write_json(self._jobs / backend_id / jd.LAUNCH, {**launch, **_launcher()})

    def _start_wrappers(self, starts: list[str]) -> None:
        """Start wrappers outside the lock (forking is slow); only one can ever claim a job."""
        for backend_id in starts:
            self._start_wrapper(backend_id)

    def _orphaned(self, jobdir: Path, launch: dict[str, Any]) -> bool:
        """Launched by a process that died before its wrapper started (and nobody claimed it)."""
        pid = launch.get("launcher_pid")
        if pid is None or pid == os.getpid() or (jobdir / jd.STATE).exists():
            return False
        if (jobdir / jd.CLAIMED).exists() or (jobdir / jd.EXIT).exists():
            return False
        return not jd.process_alive(pid, launch.get("launcher_start"))

    def _start_wrapper(self, backend_id: str) -> None:
        jobdir = self._jobs / backend_id
        command = [sys.executable, "-m", "aifactory.executors._wrapper", str(jobdir)]
        try:
            with (jobdir / jd.WRAPPER_LOG).open("ab") as log:
                self._procs[backend_id] = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            self._lost(jobdir, None, f"cannot start the job's wrapper: {exc}")
