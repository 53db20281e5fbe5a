"""The executor interface: how a site agent hands one job attempt to a site's scheduler.

An executor is deliberately small (SkyPilot's lesson): ``submit``, ``poll``, ``cancel`` and
``usage``, plus a set of capability names that placement can check before choosing a backend.
Backends register under a name and are built from configuration with :func:`make_executor`, so a
site's config says ``executor: local`` or ``executor: slurm`` and nothing imports a backend by hand.

Contract every backend keeps, because the site agent relies on it to survive crashes:

* ``submit`` is idempotent per ``(job_id, attempt)``: submitting the same key again returns the
  backend id of the first submission and starts nothing new.
* ``poll`` is a pure read of the backend's state (it may start work the backend queued itself,
  but never re-runs a job); ids the backend has never seen are left out of the answer.
* Times are epoch seconds (``time.time()``, i.e. UTC by definition) as floats: cheap to store,
  to subtract for usage, and free of time-zone mistakes.
"""

from __future__ import annotations

import abc
import importlib
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, TypeVar, get_args

from aifactory.errors import Invalid

__all__ = [
    "EXECUTORS",
    "TERMINAL_STATES",
    "Capability",
    "ExecJob",
    "ExecState",
    "ExecStatus",
    "ExecUsage",
    "Executor",
    "ExecutorFactory",
    "Launcher",
    "make_executor",
    "register",
]

Launcher = Literal["none", "torchrun"]
_LAUNCHERS: frozenset[str] = frozenset(get_args(Launcher))
# POSIX environment names; anything else is rejected rather than passed to execve.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Capability(StrEnum):
    """What a backend can do beyond running one process; members compare equal to strings."""

    GPUS = "gpus"
    MULTI_NODE = "multi_node"
    CONTAINERS = "containers"
    TORCHRUN = "torchrun"
    #: The backend estimates its pending jobs' starts (``executors.estimates.StartEstimator``).
    START_ESTIMATES = "start_estimates"
    #: Checkpoint directories can be read and staged (``executors/checkpoints.py``).
    CHECKPOINTS = "checkpoints"


class ExecState(StrEnum):
    """State of one job attempt as the backend sees it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    NODE_FAILED = "node_failed"
    PREEMPTED = "preempted"

    @property
    def terminal(self) -> bool:
        """Whether the attempt is over and its status will not change again."""
        return self in TERMINAL_STATES


TERMINAL_STATES: frozenset[ExecState] = frozenset(
    {
        ExecState.COMPLETED,
        ExecState.FAILED,
        ExecState.CANCELLED,
        ExecState.TIMED_OUT,
        ExecState.NODE_FAILED,
        ExecState.PREEMPTED,
    }
)


def _invalid(name: str, rule: str, message: str) -> Invalid:
    return Invalid.field(name, rule, message)


@dataclass(frozen=True)
class ExecJob:
    """One attempt of one platform job, as handed to an executor.

    Attributes:
        job_id: The platform's job id; with ``attempt`` it is the idempotency key.
        attempt: Attempt number, starting at 1; a retry is a new attempt.
        argv: Program and arguments, executed without a shell. Exactly one of ``argv`` and
            ``script`` is set.
        script: Bash script text, written to a file and run as ``/bin/bash FILE``.
        env: Extra environment variables for the job.
        workdir: Working directory; ``None`` means the job's own directory on the backend.
        nodes: Nodes requested.
        gpus_per_node: GPUs requested on each node.
        time_limit_s: Wall-clock limit in seconds; ``None`` means the backend's default.
        log_dir: Directory for ``stdout.log``/``stderr.log`` when no explicit paths are given.
        stdout_path: File receiving the job's standard output.
        stderr_path: File receiving the job's standard error.
        launcher: ``"none"`` runs ``argv`` as is; ``"torchrun"`` starts it under
            ``torch.distributed.run`` with one process per GPU.
        project: Project id (a Slurm site charges the project's account).
        partition: The platform's partition name at this site (mapped by the site's config).
        args: Arguments given to ``script`` (``$1`` ...), as ``sbatch script.sh ARGS`` does.
        tasks_per_node: Tasks the job's own ``srun``/``torchrun`` may start per node;
            ``None`` is one. The script itself runs once, as Slurm's batch step.
        cpus_per_task: CPUs per task; ``None`` is the site's default.
        memory_mb: Memory per node in MiB; ``0`` is the whole node; ``None`` the default.
        memory_per_cpu_mb: Memory per CPU in MiB (instead of ``memory_mb``).
        memory_per_gpu_mb: Memory per GPU in MiB (instead of ``memory_mb``).
        exclusive: Whole nodes, shared with no other job.
        constraint: Slurm node features the job needs (``"a100&ib"``).
        time_min_s: The least time the job accepts (Slurm may start it sooner with it).
        array_task: This attempt is task ``array_task`` of a job array
            (``SLURM_ARRAY_TASK_ID`` on every executor).
        run_as: The site account (a person's login) the attempt runs under; ``None`` is the
            executor's own job identity.
    """

    job_id: str
    attempt: int = 1
    argv: Sequence[str] | None = None
    script: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, hash=False)
    workdir: str | None = None
    nodes: int = 1
    gpus_per_node: int = 0
    time_limit_s: float | None = None
    log_dir: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None
    launcher: Launcher = "none"
    project: str | None = None
    partition: str | None = None
    args: Sequence[str] = ()
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    memory_mb: int | None = None
    memory_per_cpu_mb: int | None = None
    memory_per_gpu_mb: int | None = None
    exclusive: bool = False
    constraint: str | None = None
    time_min_s: float | None = None
    array_task: int | None = None
    run_as: str | None = None

    def __post_init__(self) -> None:
        # Normalise to immutable containers so a frozen spec really cannot change after submit.
        if self.argv is not None:
            object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        self._check_identity()
        self._check_command()
        self._check_resources()

    def _check_identity(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id or "\0" in self.job_id:
            raise _invalid("job_id", "required", "must be a non-empty string")
        if isinstance(self.attempt, bool) or not isinstance(self.attempt, int) or self.attempt < 1:
            raise _invalid("attempt", "min", "must be an integer >= 1")

    def _check_command(self) -> None:
        if (self.argv is None) == (self.script is None):
            raise _invalid("command", "one_of", "exactly one of argv and script must be set")
        if self.argv is not None:
            if not self.argv:
                raise _invalid("argv", "non_empty", "must name a program")
            if not all(isinstance(a, str) and "\0" not in a for a in self.argv):
                raise _invalid("argv", "strings", "every argument must be a string without NUL")
        if self.script is not None and (not self.script.strip() or "\0" in self.script):
            raise _invalid("script", "non_empty", "must be non-empty text without NUL")
        if self.args and self.script is None:
            raise _invalid("args", "script_only", "arguments are given to a script")
        if not all(isinstance(a, str) and "\0" not in a for a in self.args):
            raise _invalid("args", "strings", "every argument must be a string without NUL")
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME.match(key):
                raise _invalid(f"env.{key}", "name", "must match [A-Za-z_][A-Za-z0-9_]*")
            if not isinstance(value, str) or "\0" in value:
                raise _invalid(f"env.{key}", "string", "must be a string without NUL")
        if self.launcher not in _LAUNCHERS:
            raise _invalid("launcher", "one_of", f"must be one of {sorted(_LAUNCHERS)}")

    def _check_resources(self) -> None:
        for name in ("nodes", "gpus_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(name, "integer", "must be an integer")
        if self.nodes < 1:
            raise _invalid("nodes", "min", "must be >= 1")
        if self.gpus_per_node < 0:
            raise _invalid("gpus_per_node", "min", "must be >= 0")
        if self.time_limit_s is not None and not self.time_limit_s > 0:
            raise _invalid("time_limit_s", "positive", "must be > 0 seconds")
        for name in ("tasks_per_node", "cpus_per_task", "memory_per_cpu_mb", "memory_per_gpu_mb"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise _invalid(name, "min", "must be an integer >= 1")
        if self.memory_mb is not None and (
            not isinstance(self.memory_mb, int) or self.memory_mb < 0
        ):
            raise _invalid("memory_mb", "min", "must be an integer >= 0 (0: the whole node)")
        if self.array_task is not None and (
            not isinstance(self.array_task, int) or self.array_task < 0
        ):
            raise _invalid("array_task", "min", "must be an integer >= 0")

    @property
    def gpus(self) -> int:
        """GPUs requested in total (``nodes * gpus_per_node``)."""
        return self.nodes * self.gpus_per_node

    @property
    def key(self) -> tuple[str, int]:
        """The idempotency key ``(job_id, attempt)``."""
        return (self.job_id, self.attempt)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (for state files and wire formats)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["argv"] = list(self.argv) if self.argv is not None else None
        return data | {"env": dict(self.env), "args": list(self.args)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExecJob:
        """Inverse of :meth:`as_dict`; validates like the constructor."""
        return cls(**dict(data))


@dataclass(frozen=True)
class ExecStatus:
    """What the backend knows about one attempt right now.

    Attributes:
        state: Current state.
        exit_code: Exit status once the process ended (128 + signal when killed by a signal);
            ``None`` while running or when the backend never learnt it.
        started_at: Epoch seconds when the job's process started, ``None`` if it never did.
        ended_at: Epoch seconds when it ended, ``None`` while not terminal.
        message: Short human explanation (e.g. why it is node_failed); may be empty.
    """

    state: ExecState
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    message: str = ""


@dataclass(frozen=True)
class ExecUsage:
    """Resources an attempt consumed, the input to accounting.

    Attributes:
        gpus: GPUs held by the attempt.
        elapsed_s: Wall-clock seconds it ran (so far, while still running).
    """

    gpus: int
    elapsed_s: float

    @property
    def gpu_seconds(self) -> float:
        """GPUs times elapsed seconds."""
        return self.gpus * self.elapsed_s


class Executor(abc.ABC):
    """A backend that runs job attempts at one site.

    Attributes:
        capabilities: Names from :class:`Capability` this backend supports.
    """

    capabilities: frozenset[str] = frozenset()

    @abc.abstractmethod
    def submit(self, spec: ExecJob) -> str:
        """Hand one attempt to the backend.

        Args:
            spec: The attempt to run.

        Returns:
            The backend's id for the attempt; the same id for a repeated ``spec.key``.

        Raises:
            Invalid: The spec can never run on this backend (e.g. more GPUs than it has).
            BackendUnavailable: The backend cannot be reached now; retry later.
        """

    @abc.abstractmethod
    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        """Current status of the given attempts; unknown ids are absent from the answer."""

    @abc.abstractmethod
    def cancel(self, backend_id: str) -> None:
        """Stop an attempt (its whole process tree); a no-op once it is terminal.

        Raises:
            NotFound: The backend has never seen ``backend_id``.
        """

    def log_paths_for(self, spec: ExecJob) -> tuple[str, str] | None:
        """Where the attempt's stdout and stderr end up, if the backend writes them to files
        the control plane can read; ``None`` when it does not say."""
        if spec.stdout_path and spec.stderr_path:
            return spec.stdout_path, spec.stderr_path
        return None

    def workdir_for(self, spec: ExecJob) -> str | None:
        """The attempt's working directory at the site (where a relative ``checkpoint_dir``
        lives), if the backend can say; ``None`` when it cannot."""
        return None

    @abc.abstractmethod
    def usage(self, backend_id: str) -> ExecUsage | None:
        """Resources used so far; ``None`` when the attempt never started.

        Raises:
            NotFound: The backend has never seen ``backend_id``.
        """


ExecutorFactory = Callable[..., Executor]
EXECUTORS: dict[str, ExecutorFactory] = {}
#: Built-in backends imported on first use (see the package docstring for why).
BUILTIN_MODULES = {"local": "aifactory.executors.local", "slurm": "aifactory.executors.slurm"}
_F = TypeVar("_F", bound=ExecutorFactory)


def register(name: str) -> Callable[[_F], _F]:
    """Class decorator registering an executor factory under ``name``.

    Raises:
        ValueError: ``name`` is already taken (a programming error, caught at import).
    """

    def decorate(factory: _F) -> _F:
        if name in EXECUTORS:
            raise ValueError(f"executor {name!r} is already registered")
        EXECUTORS[name] = factory
        return factory

    return decorate


def make_executor(name: str, **config: Any) -> Executor:
    """Build the executor registered as ``name`` from its configuration.

    Raises:
        Invalid: ``name`` is not registered, or ``config`` does not fit its parameters.
    """
    factory = EXECUTORS.get(name)
    if factory is None and name in BUILTIN_MODULES:
        importlib.import_module(BUILTIN_MODULES[name])  # registers itself on import
        factory = EXECUTORS.get(name)
    if factory is None:
        valid = ", ".join(sorted({*EXECUTORS, *BUILTIN_MODULES}))
        raise Invalid.field("executor", "known", f"unknown executor {name!r}; valid: {valid}")
    try:
        # Bind first so a wrong option is reported as bad config, not as a crash inside it.
        inspect.signature(factory).bind(**config)
    except TypeError as exc:
        raise Invalid.field("executor", "config", f"bad config for {name!r}: {exc}") from exc
    return factory(**config)
