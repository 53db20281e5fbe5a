"""How the local executor turns an ExecJob into the exact argv, environment and paths it runs.

Kept apart from the scheduling code so the rules (interpreter choice, torchrun wrapping, which
environment reaches a job, which requests this one host can honour) are in one place and
testable without starting processes.

Resource requests a job makes, and what this executor does with each (docs/jobs.md):

* ``nodes``, ``gpus_per_node``: virtual GPUs granted as ``CUDA_VISIBLE_DEVICES``; several nodes
  run on this one host with all their GPUs; more GPUs than the pool has is ``Invalid``.
* ``exclusive``: honoured: the job starts alone and nothing else starts while it runs.
* ``tasks_per_node``: torchrun's processes per node; a plain job runs once (as Slurm's batch
  step does) and is told the figure in a note on its standard error.
* ``cpus_per_task``, ``memory_*``: recorded, passed on (``SLURM_CPUS_PER_TASK``) and noted on
  the job's standard error, not enforced: like the GPUs, they are virtual here.
* ``time_min_s``: always met: a job runs up to its full ``time_limit_s``.
* ``constraint``: ``Invalid``: this host has no node features.
* ``run_as``: ``Invalid``: every local job runs as the executor's one job user.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aifactory.errors import Invalid
from aifactory.executors import _jobfs
from aifactory.executors.base import ExecJob

# Only these variables of the platform's own environment reach jobs: the server's environment
# may hold credentials (database URL, tokens) that user code must never see.
DEFAULT_ENV_PASSTHROUGH: tuple[str, ...] = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
)
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")
_NOT_ENFORCED = ("cpus_per_task", "memory_mb", "memory_per_cpu_mb", "memory_per_gpu_mb")
_PATHS = ("workdir", "log_dir", "stdout_path", "stderr_path")


def _inside(path: str | None) -> bool:
    """Whether ``path`` (if given) stays inside the directory it is relative to."""
    if path is None:
        return True
    try:
        _jobfs.parts(path)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class LaunchRules:
    """The local executor's launch settings (see ``LocalExecutor`` for their meaning).

    ``job_user`` is the account jobs switch to, ``None`` when they run as the server's own user.
    With a job user every path of a job stays inside its home; without one a relative
    ``workdir`` hangs off ``workdir_base`` and absolute paths are taken as they are.
    """

    python: str
    torchrun_cpu_procs: int
    env_passthrough: tuple[str, ...]
    workdir_base: Path
    job_user: str | None = None

    def check(self, spec: ExecJob) -> None:
        """Refuse, before anything is recorded, what this executor cannot do for ``spec``.

        Raises:
            Invalid: Naming the field: a node feature, another account, or (with a job user)
                a path leaving the job's home.
        """
        if spec.constraint is not None:
            raise Invalid.field("constraint", "local", "the local executor has no node features")
        if spec.run_as is not None:
            why = "every local job runs as the executor's job user; per-person accounts need Slurm"
            raise Invalid.field("run_as", "local", why)
        if self.job_user is None:
            return
        for name in _PATHS:
            if not _inside(getattr(spec, name)):
                why = "must be a path relative to the job's directory, without '..'"
                raise Invalid.field(name, "inside_job_dir", why)

    def workdir(self, spec: ExecJob, home: Path) -> Path:
        """The job's working directory: its home unless ``workdir`` says otherwise."""
        if spec.workdir is None:
            return home
        if self.job_user is not None:
            return home.joinpath(*_jobfs.parts(spec.workdir))
        return self.workdir_base / spec.workdir  # an absolute workdir replaces the base

    def logs(self, spec: ExecJob, records: Path, home: Path) -> tuple[str, str]:
        """Paths for stdout and stderr; relative ones hang off the working directory.

        By default they are in the attempt's records, where the job cannot reach them: the
        wrapper opens them and the job writes through the descriptors it inherits.
        """
        cwd = self.workdir(spec, home)
        log_dir = cwd / spec.log_dir if spec.log_dir is not None else records
        stdout = cwd / spec.stdout_path if spec.stdout_path else log_dir / "stdout.log"
        stderr = cwd / spec.stderr_path if spec.stderr_path else log_dir / "stderr.log"
        return str(stdout), str(stderr)

    def record(
        self, spec: ExecJob, backend_id: str, gpus: list[int], home: Path, records: Path
    ) -> dict[str, Any]:
        """What the wrapper runs for ``spec``: the job's part of its launch record."""
        stdout, stderr = self.logs(spec, records, home)
        return {
            "argv": self.argv(spec, home),
            "env": self.env(spec, backend_id, gpus, home),
            "cwd": str(self.workdir(spec, home)),
            "home": str(home),
            "script": spec.script,
            "script_name": self.script_name(spec),
            "notes": self.notes(spec),
            "stdout": stdout,
            "stderr": stderr,
            "time_limit_s": spec.time_limit_s,
            "gpus": gpus,
            "exclusive": spec.exclusive,
        }

    @staticmethod
    def script_name(spec: ExecJob) -> str:
        """File name of a script job's script in its home (one per attempt)."""
        return f".aif-job.{spec.attempt}.sh"

    def argv(self, spec: ExecJob, home: Path) -> list[str]:
        """The argv to execute (no shell); a script keeps its ``#!`` line, else runs in bash."""
        if spec.script is not None:
            script = str(home / self.script_name(spec))
            shebang = spec.script.startswith("#!")
            command = [script, *spec.args] if shebang else ["/bin/bash", script, *spec.args]
            python = None
        else:
            command, python = self._resolve_python(list(spec.argv or ()))
        if spec.launcher != "torchrun":
            return command
        # All the job's "nodes" are this one host: one torchrun starts every process.
        procs = spec.nodes * spec.tasks_per_node if spec.tasks_per_node else spec.gpus
        runner = [
            python or self.python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            f"--nproc_per_node={procs or self.torchrun_cpu_procs}",
        ]
        if python is not None:
            return runner + command[1:]  # torchrun takes "script.py args" or "-m module args"
        if command[0].endswith(".py"):
            return runner + command
        return [*runner, "--no-python", *command]

    def _resolve_python(self, argv: list[str]) -> tuple[list[str], str | None]:
        """Map a bare ``python`` to the configured interpreter; report the interpreter used."""
        if not _PYTHON.match(Path(argv[0]).name):
            return argv, None
        python = self.python if "/" not in argv[0] else argv[0]
        return [python, *argv[1:]], python

    def env(self, spec: ExecJob, backend_id: str, gpus: list[int], home: Path) -> dict[str, str]:
        """The job's whole environment: allowed platform variables, the spec's, then ours."""
        env = {k: os.environ[k] for k in self.env_passthrough if k in os.environ}
        if self.job_user is not None:  # the job user has no home of its own but this one
            env.update(HOME=str(home), USER=self.job_user, LOGNAME=self.job_user)
        env["AIF_JOB_ID"] = spec.job_id  # the control plane's own job id, when it gives one
        env.update(spec.env)
        # Set last: the executor, not the job, decides which devices the job may use.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        env["AIF_ATTEMPT"] = str(spec.attempt)
        env["AIF_BACKEND_ID"] = backend_id
        if spec.array_task is not None:
            env["SLURM_ARRAY_TASK_ID"] = str(spec.array_task)
            if "AIF_ARRAY_ID" in spec.env:
                env["SLURM_ARRAY_JOB_ID"] = spec.env["AIF_ARRAY_ID"]
        if spec.cpus_per_task is not None:
            env["SLURM_CPUS_PER_TASK"] = str(spec.cpus_per_task)
        if spec.script is not None:  # "python" in a script is the site's, as in a command
            env["PATH"] = f"{Path(self.python).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def notes(self, spec: ExecJob) -> list[str]:
        """What the job asked for that runs differently here; the wrapper prints it on stderr."""
        notes = []
        asked = [f"{n}={getattr(spec, n)}" for n in _NOT_ENFORCED if getattr(spec, n)]
        if asked:
            notes.append(
                f"{', '.join(asked)}: recorded, not enforced (the local executor's CPUs and "
                "memory are shared by its jobs, like its virtual GPUs)"
            )
        if spec.tasks_per_node and spec.tasks_per_node > 1 and spec.launcher != "torchrun":
            notes.append(
                f"tasks_per_node={spec.tasks_per_node}: the job runs once, as Slurm's batch "
                "step; this host has no srun to start the tasks"
            )
        return notes
