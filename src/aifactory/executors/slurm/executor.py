"""The Slurm executor: the executor interface on top of a Slurm backend.

Submission is idempotent per ``(job id, attempt)``: the Slurm job name carries the key
(``aif-<job id>-<attempt>``) and is looked up before every ``sbatch``, so a submit retried
after a crash between "sbatch accepted" and "id recorded" finds the first job instead of
starting a second one.

Each attempt runs as the site account of its owner (``ExecJob.run_as``): ``sbatch`` as that
user through the transport (``runuser``/``sudo``), or slurmrestd with that user's own token.
Polling, cancelling and ``sacctmgr`` use the service's credentials. A site that requires site
accounts (the default) refuses an attempt without one instead of running it as the service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
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
from aifactory.executors.estimates import QueueEstimate
from aifactory.executors.slurm.accounts import SiteAccounts, gpu_minutes
from aifactory.executors.slurm.backends import CliBackend, RestBackend, SlurmBackend
from aifactory.executors.slurm.checkpoints import SlurmCheckpoints
from aifactory.executors.slurm.config import SlurmSiteConfig
from aifactory.executors.slurm.models import STATE_MESSAGES, SlurmJob, SlurmNode
from aifactory.executors.slurm.rest import RestClient, UserTokens
from aifactory.executors.slurm.script import ScriptOptions, job_name, render_script
from aifactory.executors.slurm.squeue_start import SqueueStart, by_partition
from aifactory.executors.slurm.submission import SETTLE_MARGIN_S, Submitter
from aifactory.executors.slurm.transport import (
    LocalTransport,
    SshTransport,
    Transport,
    check_login,
)

__all__ = ["SlurmExecutor", "make_backend"]

log = logging.getLogger(__name__)

# Variables a Slurm client needs; anything else of the control plane's (secrets) stays out of
# the environment sbatch copies into jobs.
_CLIENT_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ")


def _local_env() -> dict[str, str]:
    env = {k: os.environ[k] for k in _CLIENT_ENV if k in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    return env


def _cli_transport(config: SlurmSiteConfig, kind: str) -> Transport:
    if kind == "ssh" and config.ssh is not None:
        s = config.ssh
        return SshTransport(
            host=s.host,
            user=s.user,
            key_file=s.key_file,
            port=s.port,
            known_hosts_file=s.known_hosts_file,
            remote_env=s.remote_env,
            connect_timeout_s=s.connect_timeout_s,
            timeout_s=config.command_timeout_s,
        )
    return LocalTransport(
        config.slurm_conf, timeout_s=config.command_timeout_s, base_env=_local_env()
    )


def make_backend(config: SlurmSiteConfig) -> SlurmBackend:
    """The backend a site's config asks for."""
    if config.transport == "rest" and config.rest is not None:
        client = RestClient(
            config.rest.url,
            config.rest.user,
            config.rest.read_token(),
            timeout_s=config.command_timeout_s,
        )
        admin = _cli_transport(config, config.admin_transport) if config.admin_transport else None
        tokens = UserTokens(admin, config.rest.user_token_lifespan_s) if admin else None
        return RestBackend(client, job_env=config.rest.job_env or None, admin=admin, tokens=tokens)
    transport = _cli_transport(config, config.transport)
    return CliBackend(transport, accounting=config.accounting, lookup_window=config.lookup_window)


def _own_user(config: SlurmSiteConfig) -> str:
    """The user the service's own commands run as at the site."""
    if config.transport == "ssh" and config.ssh is not None:
        return config.ssh.user
    if config.transport == "rest" and config.rest is not None:
        return config.rest.user
    return pwd.getpwuid(os.geteuid()).pw_name


def _span(job: SlurmJob) -> float:
    """Seconds from a record's start to its end (0 when either is unknown)."""
    if job.start is None or job.end is None:
        return 0.0
    return max(0.0, job.end - job.start)


def _status(job: SlurmJob) -> ExecStatus:
    state = job.exec_state
    reason = job.reason if job.reason not in ("None", "") else ""
    words = STATE_MESSAGES.get(job.state, "")
    message = f"{words}: {reason}" if words and reason else words or reason
    return ExecStatus(
        state=state,
        exit_code=job.exit_code if state.terminal else None,
        started_at=job.start,
        ended_at=job.end if state.terminal else None,
        message=message,
    )


@register("slurm")
class SlurmExecutor(Executor, SlurmCheckpoints):
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
        if isinstance(self.backend, CliBackend):  # squeue --start needs Slurm's CLI
            self.capabilities = self.capabilities | {Capability.START_ESTIMATES}
        # An unanswered sbatch is over once its deadline (the command time-out) has passed.
        self.submitter = Submitter(self.config.command_timeout_s + SETTLE_MARGIN_S)
        self.service_user = _own_user(self.config)
        if self.backend.admin is not None:  # files are reached through the transport
            self.capabilities = self.capabilities | {Capability.CHECKPOINTS}

    @property
    def requires_site_account(self) -> bool:
        """Whether every attempt must name the site account it runs as."""
        return self.config.require_site_account

    def _run_as(self, spec: ExecJob) -> str | None:
        if spec.run_as is not None:
            return check_login(spec.run_as)
        if self.config.require_site_account:
            raise Invalid.field(
                "run_as",
                "site_account",
                f"{self.config.cluster} runs jobs only as their owner's own site account",
            )
        return None

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
            Invalid: Unsafe spec values, no site account where the site requires one, or
                Slurm rejected the job (its message is kept).
            BackendUnavailable: slurmctld (or ssh, or slurmrestd) is unreachable, or (with
                ``extra["scope"] == "job"``) this attempt must wait: Slurm answered "not
                now", or an unanswered sbatch is not settled yet.
        """
        run_as = self._run_as(spec)
        rendered = render_script(
            spec, self.script_options(project or spec.project, partition or spec.partition)
        )
        # Looked up by name before any sbatch; unclear outcomes are settled by looking again
        # (see submission.py): never two Slurm jobs for one attempt, never a job refused
        # here while Slurm runs it.
        return self.submitter.submit(self.backend, rendered, run_as)

    def log_paths_for(self, spec: ExecJob) -> tuple[str, str] | None:
        """The attempt's output files on the cluster's file system."""
        rendered = render_script(spec, self.script_options(spec.project, spec.partition))
        return rendered.stdout, rendered.stderr

    def workdir_for(self, spec: ExecJob) -> str | None:
        """The directory the batch script changes to on the cluster's file system."""
        return render_script(spec, self.script_options(spec.project, spec.partition)).workdir

    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        """Statuses of the given Slurm job ids; unknown ids are absent."""
        return {job_id: _status(job) for job_id, job in self.backend.states(backend_ids).items()}

    def lookup(self, specs: Sequence[ExecJob]) -> None:
        """Look up many attempts by name in one call before they are submitted one by one.

        A hand-over pass calls this with its batch; each ``submit`` that follows uses the
        answer instead of a lookup of its own (see :meth:`Submitter.remember_lookup`), so a
        batch costs one ``squeue`` (plus one ``sacct``) instead of one per job. A failed
        lookup is not an error here: each submit then looks for itself.
        """
        names = []
        for spec in specs:
            with contextlib.suppress(Invalid):  # an unsafe id is refused by its own submit
                names.append(job_name(spec.job_id, spec.attempt))
        try:
            found = self.backend.find_many(names)
        except Exception as exc:  # the per-job lookups report it, each for its own job
            log.info("batched lookup of %d names failed (%s); looking one by one", len(names), exc)
            return
        self.submitter.remember_lookup(names, found)

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
        """GPUs and elapsed time by Slurm's own clock; GPU counts from accounting when the
        controller lacks them.

        A job Slurm restarted (a site that forces requeueing despite ``--no-requeue``) is
        charged for every run: the earlier runs' times come from ``sacct --duplicates``.
        Without accounting they cannot be known, and only the last run counts (logged).
        """
        job = self._job(backend_id)
        if job.start is None:
            return None
        gpus = job.gpus
        if not gpus:
            record = self.backend.accounting(backend_id)
            gpus = record.gpus if record is not None and record.gpus else gpus
        end = job.end if job.end is not None else time.time()
        elapsed = job.elapsed_s if job.elapsed_s is not None else max(0.0, end - job.start)
        if job.restarts:
            elapsed += self._earlier_runs_s(job)
        return ExecUsage(gpus=gpus or 0, elapsed_s=elapsed)

    def _earlier_runs_s(self, job: SlurmJob) -> float:
        """Seconds of the runs before the current one of a job Slurm requeued."""
        assert job.start is not None
        earlier = [
            r for r in self.backend.runs(job.job_id) if r.start is not None and r.start < job.start
        ]
        if len(earlier) < job.restarts:
            log.warning(
                "Slurm job %s ran %d times; accounting knows %d earlier run(s): the others "
                "cannot be charged",
                job.job_id,
                job.restarts + 1,
                len(earlier),
            )
        return sum(r.elapsed_s if r.elapsed_s is not None else _span(r) for r in earlier)

    def ensure_account(self, project: str, gpu_hours: float, users: Sequence[str]) -> bool:
        """Create or update the project's Slurm account with a ``GrpTRESMins`` GPU budget,
        its users exactly ``users`` (the members' site logins).

        Where the site does not require site accounts, the service's own user is a member
        too (it runs the jobs of people without one).

        Returns False when this site keeps no accounts here (no accounting, or a REST site
        without an admin transport, whose accounts its operators manage).
        """
        transport = self.backend.admin
        if not self.config.accounting or transport is None:
            return False
        members = list(users)
        if not self.config.require_site_account:
            members.append(self.service_user)
        accounts = SiteAccounts(transport, account_prefix=self.config.account_prefix)
        accounts.ensure_account(project, gpu_minutes(gpu_hours), members)
        return True

    def nodes(self) -> list[SlurmNode]:
        """The cluster's nodes (capacity for placement, health for the site agent)."""
        return self.backend.nodes()

    def start_estimates(self, partitions: Sequence[str]) -> dict[str, QueueEstimate]:
        """Slurm's expected starts of the pending jobs (``squeue --start``), per platform
        partition (capability ``start_estimates``; CLI transports only). A name the site's
        partition map lacks gets an empty estimate.
        """
        if not isinstance(self.backend, CliBackend):
            return {name: QueueEstimate() for name in partitions}
        slurm: dict[str, str | None] = {}
        for name in partitions:
            with contextlib.suppress(Invalid):
                slurm[name] = self.config.partition_for(name)
        found = by_partition(self.backend.run(SqueueStart()), slurm)
        return {name: found.get(name, QueueEstimate()) for name in partitions}
