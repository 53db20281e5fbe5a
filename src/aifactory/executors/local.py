"""The local executor: the embedded default's stand-in for a site scheduler.

A fixed pool of virtual GPUs; each job attempt runs as a child process group on this machine
with ``CUDA_VISIBLE_DEVICES`` naming the GPU indices it was granted. Jobs that do not fit the
free GPUs wait in a strict FIFO queue (a large job at the head is never overtaken, so it cannot
starve); an ``exclusive`` job waits until it can run alone, and nothing starts beside it. The
executor has no thread of its own: queued jobs start during ``submit``, ``poll``, ``cancel`` and
``recover`` calls, which the site agent makes every tick anyway; time limits and cancels are
enforced by each job's wrapper process (see ``_wrapper``), so they hold even while no executor
is alive.

All state lives in ``state_dir`` (see ``_jobdir`` for the files), guarded by an ``flock`` so
several executor instances, in one process or several, can share it. That makes the executor
crash-safe: a new instance on the same directory sees every job the old one submitted, and
``submit`` is idempotent per ``(job_id, attempt)`` because the backend id is derived from that
key and the job directory records that it was taken.

Each instance keeps what it last read of the unfinished attempts and re-reads only those whose
records changed (``_changes``: wrappers and executors leave an event for every change), so a
poll while nothing happens costs a few system calls however many jobs run. What changes without
an event, a wrapper killed outright or a launch that never started, is looked for every
``liveness_check_s`` (``_records.stale``).

``launcher="torchrun"`` runs ``python -m torch.distributed.run --standalone --nnodes=1
--nproc_per_node=N`` with N = the job's GPUs, or ``torchrun_cpu_procs`` for a job without GPUs
(then each rank trains on the CPU with the gloo backend). Multi-node requests are run on this
one host with all their GPUs: the local executor simulates nodes, it does not have them.

Jobs never run with the control plane's identity: with ``job_user`` set (the server always sets
it, ``AIF_LOCAL_JOB_USER``) and this process root, each job runs as that unprivileged account
(``_jobuser``) in a home of its own (``_jobfs``), with a scrubbed environment, while the records
it must not forge stay in ``state_dir``, out of its reach. A process that is not root cannot
switch users: its jobs run as itself, and a warning says so once (see docs/jobs.md).
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
from aifactory.executors import _jobuser, _wrapper
from aifactory.executors import _records as records
from aifactory.executors._homes import DEFAULT_JOB_ROOT, Homes
from aifactory.executors._launch import DEFAULT_ENV_PASSTHROUGH, LaunchRules
from aifactory.executors._local_checkpoints import LocalCheckpoints
from aifactory.executors._view import View
from aifactory.executors.base import (
    Capability,
    ExecJob,
    ExecStatus,
    ExecUsage,
    Executor,
    register,
)

__all__ = ["DEFAULT_ENV_PASSTHROUGH", "DEFAULT_JOB_ROOT", "LocalExecutor"]

_READABLE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@register("local")
class LocalExecutor(Executor, LocalCheckpoints):
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
        env_passthrough: Names of the platform's environment variables jobs inherit (never
            the platform's own ``AIF_*`` settings).
        workdir_base: Base for relative working directories of jobs that run as this
            process's user (default: current directory).
        job_user: Account jobs run as when this process is root (created if missing); ``None``
            runs them as this process's user, for embedding in trusted tools only: the server
            always passes ``AIF_LOCAL_JOB_USER``.
        job_root: Where jobs running as ``job_user`` get their homes (default
            ``DEFAULT_JOB_ROOT``); one sub-directory per state directory.
        require_job_user: Refuse to run (``Invalid``) when jobs could not switch to
            ``job_user`` because this process is not root.
    """

    capabilities = frozenset({Capability.GPUS, Capability.TORCHRUN, Capability.CHECKPOINTS})
    #: Seconds between looks for attempts that changed without an event (see the module doc).
    liveness_check_s = 2.0
    #: Seconds between a wrapper's looks at the cancel file, should the signal have got lost.
    cancel_recheck_s = _wrapper.RECHECK_S

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
        job_user: str | None = None,
        job_root: str | os.PathLike[str] | None = None,
        require_job_user: bool = False,
    ) -> None:
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise Invalid.field("gpus", "min", "must be an integer >= 0")
        if torchrun_cpu_procs < 1:
            raise Invalid.field("torchrun_cpu_procs", "min", "must be >= 1")
        if any(name.startswith("AIF_") for name in env_passthrough):
            raise Invalid.field("env_passthrough", "secret", "the platform's AIF_* settings stay")
        self.gpus = gpus
        self.state_dir = Path(state_dir).resolve()
        self._jobs = self.state_dir / "jobs"
        self._active = self.state_dir / "active"
        try:
            self.user = _jobuser.resolve(job_user, require=require_job_user) if job_user else None
        except PermissionError as exc:
            raise Invalid.field("job_user", "switch", str(exc)) from None
        self._homes = Homes.prepare(self.state_dir, self.user, job_root)
        self._kill_grace_s = kill_grace_s
        self._launch_grace_s = launch_grace_s
        self._rules = LaunchRules(
            python=python or sys.executable,
            torchrun_cpu_procs=torchrun_cpu_procs,
            env_passthrough=tuple(env_passthrough),
            workdir_base=Path(workdir_base or Path.cwd()).resolve(),
            job_user=self.user.name if self.user else None,
        )
        if self.user is not None:
            _jobuser.ensure_python(self.user, self._rules.python)
        self._thread_lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._specs: dict[str, tuple[int, ExecJob]] = {}
        self._view = View(self.state_dir, launch_grace_s)

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
        self._rules.check(spec)
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
                jd.note(jobdir)  # before the change: we hold the lock (see _jobdir)
                (self._active / backend_id).touch()  # a crash may have hit before this
            starts = self._update()
        self._start_wrappers(starts)
        return backend_id

    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        """Status of each known id (unknown ids are left out); starts queued jobs that fit."""
        with self._locked():
            starts = self._update()
            found = {b: self._view.status(b) for b in backend_ids}
        self._start_wrappers(starts)
        return {b: status for b, status in found.items() if status is not None}

    def cancel(self, backend_id: str) -> None:
        """Cancel: a queued job never starts; a running one gets SIGTERM, then SIGKILL.

        Raises:
            NotFound: Unknown backend id.
        """
        with self._locked():
            self._view.refresh(self.liveness_check_s)
            if self._require(backend_id).state.terminal:
                return
            jobdir = self._jobs / backend_id
            jd.note(jobdir)  # before the change: we hold the lock (see _jobdir)
            (jobdir / jd.CANCEL).touch()
            if not (jobdir / jd.LAUNCH).exists():
                jd.write_json(jobdir / jd.EXIT, {"outcome": jd.CANCELLED, "ended_at": time.time()})
            else:
                state = jd.read_json(jobdir / jd.STATE)
                # The wrapper looks at the cancel file only now and then: the signal wakes it.
                if state and jd.process_alive(state["wrapper_pid"], state["wrapper_start"]):
                    with contextlib.suppress(ProcessLookupError):  # it may have just ended
                        os.kill(state["wrapper_pid"], signal.SIGTERM)
            starts = self._update()
        self._start_wrappers(starts)

    def usage(self, backend_id: str) -> ExecUsage | None:
        """GPUs and seconds used so far; ``None`` if the attempt never started.

        Raises:
            NotFound: Unknown backend id.
        """
        with self._locked():
            self._view.refresh(self.liveness_check_s)
            status = self._require(backend_id)
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
            starts = self._update()
            active = sorted(self._view.unfinished)
        self._start_wrappers(starts)
        return active

    def log_paths_for(self, spec: ExecJob) -> tuple[str, str] | None:
        """The attempt's log files in its records (or the spec's explicit paths)."""
        backend_id = self.backend_id_for(*spec.key)
        return self._rules.logs(spec, self._jobs / backend_id, self.home(backend_id))

    def workdir_for(self, spec: ExecJob) -> str | None:
        """The attempt's working directory: its home, or ``workdir`` within it."""
        return str(self._rules.workdir(spec, self.home(self.backend_id_for(*spec.key))))

    def log_paths(self, backend_id: str) -> tuple[Path, Path]:
        """Files receiving the attempt's standard output and standard error."""
        with self._locked():
            self._require(backend_id)
            spec = self._spec(backend_id)
        stdout, stderr = self._rules.logs(spec, self._jobs / backend_id, self.home(backend_id))
        return Path(stdout), Path(stderr)

    def home(self, backend_id: str) -> Path:
        """The job's home: its working directory by default, shared by its attempts."""
        return self._homes.of(backend_id)

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

    def _update(self) -> list[str]:
        """Refresh the view; schedule when it changed (nothing else frees GPUs or queues)."""
        checked = self._view.refresh(self.liveness_check_s)
        if checked or self._view.dirty:
            self._reap()
        if not self._view.dirty:
            return []
        self._view.dirty = False
        return self._schedule()

    def _require(self, backend_id: str) -> ExecStatus:
        status = self._view.status(backend_id)
        if status is None:
            raise NotFound(f"no local job {backend_id!r}")
        return status

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
        running, alone = 0, False  # attempts holding resources; whether one is exclusive
        queued: list[tuple[int, str]] = []
        for backend_id, seen in list(self._view.unfinished.items()):
            launch = seen.launch
            if launch is None:
                queued.append((self._entry(backend_id)[0], backend_id))
                continue
            busy.update(launch["gpus"])
            running, alone = running + 1, alone or launch.get("exclusive", False)
            if seen.state is None and records.orphaned(self._jobs / backend_id, launch):
                self._record_launch(backend_id, launch)
                starts.append(backend_id)
        free = [i for i in range(self.gpus) if i not in busy]
        for _, backend_id in sorted(queued):
            spec = self._spec(backend_id)
            if alone or spec.gpus > len(free) or (spec.exclusive and running):
                break  # strict FIFO: the head waits (GPUs, or to run alone), none overtakes
            self._launch(backend_id, free[: spec.gpus])
            starts.append(backend_id)
            free, running, alone = free[spec.gpus :], running + 1, spec.exclusive
        return starts

    # ----------------------------------------------------------------- launching

    def _launch(self, backend_id: str, gpus: list[int]) -> None:
        spec, home, user = self._spec(backend_id), self.home(backend_id), self.user
        launch = self._rules.record(spec, backend_id, gpus, home, self._jobs / backend_id)
        launch.update(
            homes_mode=self._homes.mode,
            user=user.name if user else None,
            uid=user.uid if user else None,
            gid=user.gid if user else None,
            kill_grace_s=self._kill_grace_s,
            cancel_recheck_s=self.cancel_recheck_s,
        )
        self._record_launch(backend_id, launch)

    def _record_launch(self, backend_id: str, launch: dict[str, Any]) -> None:
        """Write the launch record (lock held) before any wrapper starts: the GPUs stay granted
        if we crash next, and the launcher's pid lets the next process start the wrapper."""
        launch = {**launch, **records.launcher()}
        jd.note(self._jobs / backend_id)  # before the change: we hold the lock (see _jobdir)
        jd.write_json(self._jobs / backend_id / jd.LAUNCH, launch)
        self._view.launched(backend_id, launch)

    def _start_wrappers(self, starts: list[str]) -> None:
        """Start wrappers outside the lock (forking is slow); only one can ever claim a job."""
        for backend_id in starts:
            self._start_wrapper(backend_id)

    def _start_wrapper(self, backend_id: str) -> None:
        jobdir = self._jobs / backend_id
        command = [sys.executable, "-m", "aifactory.executors._wrapper", str(jobdir)]
        # The wrapper needs no secrets either; it gets what it needs to import us.
        env = {k: v for k, v in os.environ.items() if k in DEFAULT_ENV_PASSTHROUGH}
        try:
            with (jobdir / jd.WRAPPER_LOG).open("ab") as log:
                self._procs[backend_id] = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=jobdir,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            records.lost(jobdir, None, f"cannot start the job's wrapper: {exc}")
