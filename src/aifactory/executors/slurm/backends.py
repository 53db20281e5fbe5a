"""The two ways the executor talks to Slurm: its CLI (locally or over SSH) or slurmrestd.

Both offer the same small surface, in terms of :class:`SlurmJob`, so the executor's logic
(idempotent submit, polling, cancel, usage) is written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from aifactory.errors import Invalid
from aifactory.executors.slurm.commands import (
    Sacct,
    Sbatch,
    Scancel,
    Sinfo,
    Squeue,
    SqueueByName,
)
from aifactory.executors.slurm.failures import command_error
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.rest import RestClient
from aifactory.executors.slurm.script import RenderedScript
from aifactory.executors.slurm.transport import Transport

__all__ = ["CliBackend", "RestBackend", "SlurmBackend", "latest_submission"]

_T_co = TypeVar("_T_co", covariant=True)


class _Command(Protocol[_T_co]):
    def build(self) -> list[str]: ...

    def parse(self, stdout: str, stderr: str, returncode: int) -> _T_co: ...


class SlurmBackend(Protocol):
    """What the executor needs from a cluster."""

    def prepare(self, rendered: RenderedScript) -> None:
        """Create the directories Slurm opens before the job starts."""
        ...

    def submit(self, rendered: RenderedScript) -> str:
        """Submit; Slurm's job id."""
        ...

    def find(self, name: str) -> SlurmJob | None:
        """The live or recorded job with this name (rejected submissions excluded)."""
        ...

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """Current records of the given jobs; unknown ids are absent."""
        ...

    def cancel(self, job_id: str) -> None:
        """Cancel one job."""
        ...

    def accounting(self, job_id: str) -> SlurmJob | None:
        """The accounting record, ``None`` without accounting."""
        ...

    def nodes(self) -> list[SlurmNode]:
        """All nodes."""
        ...


def latest_submission(jobs: Iterable[SlurmJob]) -> SlurmJob | None:
    """The newest job that really was submitted.

    A rejected sbatch still consumes an id and leaves a FAILED record without nodes; it must
    not count as "already submitted", or a retried submit would report that dead id.
    """
    real = [j for j in jobs if not (j.state == "FAILED" and j.never_ran)]
    return max(real, key=lambda j: int(j.job_id.split("_")[0]), default=None)


class CliBackend:
    """Slurm's command-line clients through a :class:`Transport`.

    Args:
        transport: Local subprocess or SSH.
        accounting: Whether the cluster has slurmdbd (``sacct`` answers).
        lookup_window: How far back ``sacct --name`` searches for an earlier submission.
    """

    def __init__(
        self, transport: Transport, *, accounting: bool = True, lookup_window: str = "now-14days"
    ) -> None:
        self.transport = transport
        self.accounting_enabled = accounting
        self.lookup_window = lookup_window

    def run(self, command: _Command[_T_co], stdin: str | None = None) -> _T_co:
        """Build, run and parse one command object."""
        result = self.transport.run(command.build(), stdin)
        return command.parse(result.stdout, result.stderr, result.returncode)

    def prepare(self, rendered: RenderedScript) -> None:
        """``mkdir -p`` the job directory and any explicit log directories, owner-only."""
        argv = ["mkdir", "-p", "-m", "0700", "--", rendered.job_dir, *rendered.explicit_paths]
        result = self.transport.run(argv)
        if result.returncode != 0:
            raise command_error("mkdir", result.returncode, result.stdout, result.stderr)

    def submit(self, rendered: RenderedScript) -> str:
        """``sbatch --parsable`` with the script on stdin."""
        return self.run(Sbatch(), stdin=rendered.text)

    def find(self, name: str) -> SlurmJob | None:
        """Look in the controller first (no lag), then in accounting (older jobs)."""
        found = latest_submission(self.run(SqueueByName(name=name)))
        if found is None and self.accounting_enabled:
            found = latest_submission(self.run(Sacct(name=name, since=self.lookup_window)))
        return found

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """squeue for what the controller still holds, sacct for older jobs."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        found = {j.job_id: j for j in self.run(Squeue(job_ids=wanted))}
        missing = [i for i in wanted if i not in found]
        if missing and self.accounting_enabled:
            found.update({j.job_id: j for j in self.run(Sacct(job_ids=missing))})
        return {i: found[i] for i in wanted if i in found}

    def cancel(self, job_id: str) -> None:
        """``scancel``."""
        self.run(Scancel(job_id))

    def accounting(self, job_id: str) -> SlurmJob | None:
        """``sacct --parsable2`` record."""
        if not self.accounting_enabled:
            return None
        return next(iter(self.run(Sacct(job_ids=[job_id]))), None)

    def nodes(self) -> list[SlurmNode]:
        """``sinfo --json``."""
        return self.run(Sinfo())


class RestBackend:
    """slurmrestd v0.0.38.

    slurmrestd cannot create directories, so explicit log paths inside the job directory are
    refused; the default logs live in the job root, which exists.
    """

    def __init__(self, client: RestClient, *, job_env: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.job_env = dict(job_env) if job_env else None

    def prepare(self, rendered: RenderedScript) -> None:
        """Nothing to create; refuse paths whose directories may not exist."""
        if rendered.explicit_paths:
            raise Invalid.field(
                "stdout_path", "rest", "explicit log paths need the ssh or local transport"
            )

    def submit(self, rendered: RenderedScript) -> str:
        """POST ``/job/submit``."""
        return self.client.submit(rendered, self.job_env)

    def find(self, name: str) -> SlurmJob | None:
        """Controller's jobs with this name (accounting keeps only what the controller had)."""
        return latest_submission(j for j in self.client.jobs() if j.name == name)

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """``/jobs`` filtered, then ``/slurmdb/job`` for jobs the controller forgot."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        found = {j.job_id: j for j in self.client.jobs() if j.job_id in wanted}
        for job_id in wanted:
            if job_id not in found and (record := self.client.accounting(job_id)) is not None:
                found[job_id] = record
        return {i: found[i] for i in wanted if i in found}

    def cancel(self, job_id: str) -> None:
        """DELETE ``/job/{id}``."""
        self.client.cancel(job_id)

    def accounting(self, job_id: str) -> SlurmJob | None:
        """``/slurmdb/v0.0.38/job/{id}``."""
        return self.client.accounting(job_id)

    def nodes(self) -> list[SlurmNode]:
        """``/nodes``."""
        return self.client.nodes()
