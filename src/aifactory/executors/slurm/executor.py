"""The Slurm executor: the executor interface on top of a Slurm backend.

Submission is idempotent per ``(job id, attempt)``: the Slurm job name carries the key
(``aif-<job id>-<attempt>``) and is looked up before every ``sbatch``, so a submit retried
after a crash between "sbatch accepted" and "id recorded" finds the first job instead of
starting a second one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from aifactory.errors import Invalid, NotFound
from aifactory.executors.base import (
    Capability,
    ExecJob,
    ExecStatus,
    ExecUsage,
    Executor,
    register,
)
from aifactory.executors.slurm.accounts import SiteAccounts, gpu_minutes
from aifactory.executors.slurm.backends import CliBackend, RestBackend, SlurmBackend
from aifactory.executors.slurm.config import SlurmSiteConfig
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.rest import RestClient
from aifactory.executors.slurm.script import ScriptOptions, render_script
from aifactory.executors.slurm.transport import LocalTransport, SshTransport

__all__ = ["SlurmExecutor", "make_backend"]

# Variables a Slurm client needs; anything else of the control plane's (secrets) stays out of
# the environment sbatch copies into jobs.
_CLIENT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ")


def _local_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _CLIENT_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def make_backend(config: SlurmSiteConfig) -> SlurmBackend:
    """The backend a site's config asks for."""
    if config.transport == "rest" and config.rest is not None:
        client = RestClient(
            config.rest.url,
            config.rest.user,
            config.rest.read_token(),
            timeout_s=config.command_timeout_s,
        )
        return RestBackend(client, job_env=config.rest.job_env or None)
    transport: LocalTransport | SshTransport
    if config.transport == "ssh" and config.ssh is not None:
        s = config.ssh
        transport = SshTransport(
            host=s.host,
            user=s.user,
            key_file=s.key_file,
            port=s.port,
            known_hosts_file=s.known_hosts_file,
            remote_env=s.remote_env,
            connect_timeout_s=s.connect_timeout_s,
            timeout_s=config.command_timeout_s,
        )
    else:
        transport = LocalTransport(
            config.slurm_conf, timeout_s=config.command_timeout_s, base_env=_local_env()
        )
    return CliBackend(transport, accounting=config.accounting, lookup_window=config.lookup_window)


def _status(job: SlurmJob) -> ExecStatus:
    state = job.exec_state
    message = job.reason if job.reason not in ("None", "") else ""
    if job.state == "PREEMPTED":
        message = "preempted"
    return ExecStatus(
        state=state,
        exit_code=job.exit_code if state.terminal else None,
        started_at=job.start,
        ended_at=job.end if state.terminal else None,
        message=message,
    )


@register("slurm")
class SlurmExecutor(Executor):
    """Runs job attempts on one Slurm cluster (local CLI, SSH to a login node, or slurmrestd).

    Args:
        backend: A ready backend (tests, or a caller that builds its own); ``None`` builds one
            from the configuration.
        **settings: The site's :class:`SlurmSiteConfig` fields (what ``sites.yaml`` holds).

    Raises:
        Invalid: The settings do not form a valid configuration.
    """

    capabilities = frozenset({Capability.GPUS, Capability.MULTI_NODE, Capability.TORCHRUN})

    def __init__(self, *, backend: SlurmBackend | None = None, **settings: Any) -> None:
        try:
            self.config = SlurmSiteConfig.model_validate(settings)
        except ValidationError as exc:
            raise Invalid(f"bad slurm executor settings: {exc}") from exc
        self.backend = backend if backend is not None else make_backend(self.config)

    def script_options(self, project: str | None, partition: str | None) -> ScriptOptions:
        """The rendering options for a job of ``project`` on ``partition``."""
        return ScriptOptions(
            job_root=self.config.job_root,
            partition=self.config.partition_for(partition),
            account=self.config.account_for(project),
            gpu_type=self.config.gpu_type,
            gpu_request=self.config.gpu_request,
        )

    def submit(
        self, spec: ExecJob, *, project: str | None = None, partition: str | None = None
    ) -> str:
        """Submit one attempt (see :meth:`Executor.submit`).

        Args:
            spec: The attempt.
            project: Project id; its Slurm account is charged (``None``: the user's default).
            partition: Platform partition name from the site's map (``None``: the default).

        Raises:
            Invalid: Unsafe spec values, or Slurm rejected the job (its message is kept).
            BackendUnavailable: slurmctld (or ssh, or slurmrestd) is unreachable.
        """
        rendered = render_script(
            spec, self.script_options(project or spec.project, partition or spec.partition)
        )
        existing = self.backend.find(rendered.name)
        if existing is not None:
            return existing.job_id
        self.backend.prepare(rendered)
        return self.backend.submit(rendered)

    def log_paths_for(self, spec: ExecJob) -> tuple[str, str] | None:
        """The attempt's output files on the cluster's file system."""
        rendered = render_script(spec, self.script_options(spec.project, spec.partition))
        return rendered.stdout, rendered.stderr

    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        """Statuses of the given Slurm job ids; unknown ids are absent."""
        return {job_id: _status(job) for job_id, job in self.backend.jobs(backend_ids).items()}

    def _job(self, backend_id: str) -> SlurmJob:
        job = self.backend.jobs([backend_id]).get(backend_id)
        if job is None:
            raise NotFound(f"unknown Slurm job {backend_id}", extra={"job_id": backend_id})
        return job

    def cancel(self, backend_id: str) -> None:
        """Cancel one attempt; a no-op when it already ended."""
        if not self._job(backend_id).exec_state.terminal:
            self.backend.cancel(backend_id)

    def usage(self, backend_id: str) -> ExecUsage | None:
        """GPUs and elapsed time; GPU counts from accounting when the controller lacks them."""
        job = self._job(backend_id)
        if job.start is None:
            return None
        gpus = job.gpus
        if not gpus:
            record = self.backend.accounting(backend_id)
            gpus = record.gpus if record is not None and record.gpus else gpus
        end = job.end if job.end is not None else time.time()
        elapsed = job.elapsed_s if job.elapsed_s is not None else max(0.0, end - job.start)
        return ExecUsage(gpus=gpus or 0, elapsed_s=elapsed)

    def ensure_account(self, project: str, gpu_hours: float, users: Sequence[str]) -> bool:
        """Create or update the project's Slurm account with a ``GrpTRESMins`` GPU budget.

        Returns False when this site keeps no accounts here (no accounting, or a REST-only
        site whose accounts its operators manage).
        """
        transport = getattr(self.backend, "transport", None)
        if not self.config.accounting or transport is None:
            return False
        accounts = SiteAccounts(transport, account_prefix=self.config.account_prefix)
        accounts.ensure_account(project, gpu_minutes(gpu_hours), users)
        return True

    def nodes(self) -> list[SlurmNode]:
        """The cluster's nodes (capacity for placement, health for the site agent)."""
        return self.backend.nodes()
