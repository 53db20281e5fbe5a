"""How the local executor turns an ExecJob into the exact argv, environment and paths it runs.

Kept apart from the scheduling code so the rules (interpreter choice, torchrun wrapping, which
environment reaches a job) are in one place and testable without starting processes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from aifactory.executors import _jobdir as jd
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


@dataclass(frozen=True)
class LaunchRules:
    """The local executor's launch settings (see ``LocalExecutor`` for their meaning)."""

    python: str
    torchrun_cpu_procs: int
    env_passthrough: tuple[str, ...]
    workdir_base: Path

    def workdir(self, spec: ExecJob, jobdir: Path) -> Path:
        """The job's working directory; relative ones hang off ``workdir_base``."""
        if spec.workdir is None:
            return jobdir
        return self.workdir_base / spec.workdir  # an absolute workdir replaces the base

    def logs(self, spec: ExecJob, jobdir: Path) -> tuple[str, str]:
        """Paths for stdout and stderr; relative ones hang off the working directory."""
        cwd = self.workdir(spec, jobdir)
        log_dir = cwd / spec.log_dir if spec.log_dir is not None else jobdir
        stdout = cwd / spec.stdout_path if spec.stdout_path else log_dir / "stdout.log"
        stderr = cwd / spec.stderr_path if spec.stderr_path else log_dir / "stderr.log"
        return str(stdout), str(stderr)

    def argv(self, spec: ExecJob, jobdir: Path) -> list[str]:
        """The argv to execute (no shell); writes the script file for script jobs."""
        if spec.script is not None:
            script = jobdir / jd.SCRIPT
            script.write_text(spec.script, encoding="utf-8")
            script.chmod(0o700)
            command, python = ["/bin/bash", str(script)], None
        else:
            command, python = self._resolve_python(list(spec.argv or ()))
        if spec.launcher != "torchrun":
            return command
        runner = [
            python or self.python,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nnodes=1",
            f"--nproc_per_node={spec.gpus or self.torchrun_cpu_procs}",
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

    def env(self, spec: ExecJob, backend_id: str, gpus: list[int]) -> dict[str, str]:
        """The job's whole environment: allowed platform variables, the spec's, then ours."""
        env = {k: os.environ[k] for k in self.env_passthrough if k in os.environ}
        env["AIF_JOB_ID"] = spec.job_id  # the control plane's own job id, when it gives one
        env.update(spec.env)
        # Set last: the executor, not the job, decides which devices the job may use.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
        env["AIF_ATTEMPT"] = str(spec.attempt)
        env["AIF_BACKEND_ID"] = backend_id
        return env
