"""The two ways the executor talks to Slurm: its CLI (locally or over SSH) or slurmrestd.

Both offer the same small surface, in terms of :class:`SlurmJob`, so the executor's logic
(idempotent submit, polling, cancel, usage) is written once. ``prepare`` and ``submit`` take
the site account the job runs as; every other call uses the service's own credentials, and
``admin`` is the transport for administrative commands (``sacctmgr``, ``scontrol token``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from aifactory.errors import BackendUnavailable, Invalid
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
from aifactory.executors.slurm.rest import RestClient, UserTokens
from aifactory.executors.slurm.script import RenderedScript
from aifactory.executors.slurm.squeue_states import SqueueStates
from aifactory.executors.slurm.transport import Transport

__all__ = ["CliBackend", "RestBackend", "SlurmBackend", "latest_submission", "settled"]

_T_co = TypeVar("_T_co", covariant=True)


class _Command(Protocol[_T_co]):
    def build(self) -> list[str]: ...

    def parse(self, stdout: str, stderr: str, returncode: int) -> _T_co: ...


class SlurmBackend(Protocol):
    """What the executor needs from a cluster."""

    @property
    def admin(self) -> Transport | None:
        """Where administrative commands run; ``None`` when this site gives the agent none."""
        ...

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        """Create the directories Slurm opens before the job starts (as ``run_as``)."""
        ...

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        """Submit as ``run_as`` (``None``: the service's own user); Slurm's job id."""
        ...

    def find(self, name: str) -> SlurmJob | None:
        """The live or recorded job with this name (rejected submissions excluded)."""
        ...

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        """:meth:`find` for several names at once; names without a job are absent."""
        ...

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """Current records of the given jobs; unknown ids are absent."""
        ...

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """:meth:`jobs` as a poll needs them, as cheaply as the backend can (no restarts)."""
        ...

    def cancel(self, job_id: str) -> None:
        """Cancel one job."""
        ...

    def accounting(self, job_id: str) -> SlurmJob | None:
        """The accounting record, ``None`` without accounting."""
        ...

    def runs(self, job_id: str) -> list[SlurmJob]:
        """One accounting record per run of the job (several if Slurm requeued it)."""
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


def settled(record: SlurmJob | None) -> SlurmJob | None:
    """An accounting record that can stand for a job the controller no longer holds.

    Only a finished one: accounting still saying PENDING/RUNNING for a job slurmctld has
    forgotten is a "runaway" record (its end never reached slurmdbd, or not yet), not a job
    that runs, so the caller treats the job as unknown (the site agent's ``lost``).
    """
    return record if record is not None and record.exec_state.terminal else None


#: Names or ids per command line (a few KiB of argv, whatever the transport).
_CHUNK = 500


def _chunks(items: list[str]) -> list[list[str]]:
    return [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]


def _latest_by_name(jobs: Iterable[SlurmJob]) -> dict[str, SlurmJob]:
    """:func:`latest_submission` per name."""
    by_name: dict[str, list[SlurmJob]] = {}
    for job in jobs:
        by_name.setdefault(job.name, []).append(job)
    latest = {name: latest_submission(js) for name, js in by_name.items()}
    return {name: job for name, job in latest.items() if job is not None}


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

    @property
    def admin(self) -> Transport:
        """The service's own transport (also where ``sacctmgr`` runs)."""
        return self.transport

    def run(
        self, command: _Command[_T_co], stdin: str | None = None, run_as: str | None = None
    ) -> _T_co:
        """Build, run and parse one command object (as ``run_as``, if given)."""
        transport = self.transport if run_as is None else self.transport.as_user(run_as)
        result = transport.run(command.build(), stdin)
        return command.parse(result.stdout, result.stderr, result.returncode)

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        """``mkdir -p`` explicit log directories (and the job directory above them),
        owner-only, as the user the job runs as (so the job can write there and nobody else
        can read).

        Slurm opens a job's log files before its script runs, so their directories must exist
        first. Without explicit log paths nothing must: the logs go to the job root, and the
        script makes the job directory itself (umask 077), which spares every hand-over a
        command run as the person.
        """
        if not rendered.explicit_paths:
            return
        argv = ["mkdir", "-p", "-m", "0700", "--", rendered.job_dir, *rendered.explicit_paths]
        transport = self.transport if run_as is None else self.transport.as_user(run_as)
        result = transport.run(argv)
        if result.returncode != 0:
            raise command_error("mkdir", result.returncode, result.stdout, result.stderr)

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        """``sbatch --parsable`` with the script on stdin, as ``run_as``."""
        # sbatch is killed shortly before the transport gives up on it, so an unanswered
        # submission is settled (submitted or not) by the time the executor looks it up.
        timeout = getattr(self.transport, "timeout_s", None)
        deadline = max(1.0, float(timeout) - 2) if isinstance(timeout, int | float) else None
        return self.run(Sbatch(deadline_s=deadline), stdin=rendered.text, run_as=run_as)

    def find(self, name: str) -> SlurmJob | None:
        """Look in the controller first (no lag), then in accounting (older jobs)."""
        found = latest_submission(self.run(SqueueByName(name=name)))
        if found is None and self.accounting_enabled:
            found = latest_submission(self.run(Sacct(name=name, since=self.lookup_window)))
        return found

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        """One ``squeue --name=A,B,...`` (then one ``sacct`` for the rest) for many names."""
        found: dict[str, SlurmJob] = {}
        for chunk in _chunks(list(dict.fromkeys(names))):
            found.update(_latest_by_name(self.run(SqueueByName(chunk[0], chunk[1:]))))
            rest = [n for n in chunk if n not in found]
            if rest and self.accounting_enabled:
                query = Sacct(name=rest[0], more=rest[1:], since=self.lookup_window)
                found.update(_latest_by_name(self.run(query)))
        return found

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """squeue for what the controller still holds, sacct for finished older jobs."""
        return self._records(job_ids, lambda ids: self.run(Squeue(job_ids=ids)))

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """Like :meth:`jobs`, from ``squeue --jobs=... --Format`` (only the polled jobs)."""
        return self._records(
            job_ids, lambda ids: [j for c in _chunks(ids) for j in self.run(SqueueStates(c))]
        )

    def _records(
        self, job_ids: Iterable[str], controller: Callable[[list[str]], list[SlurmJob]]
    ) -> dict[str, SlurmJob]:
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        found = {j.job_id: j for j in controller(wanted) if j.job_id in wanted}
        missing = [i for i in wanted if i not in found]
        if missing and self.accounting_enabled:
            records = (settled(j) for j in self.run(Sacct(job_ids=missing)))
            found.update({j.job_id: j for j in records if j is not None})
        return {i: found[i] for i in wanted if i in found}

    def cancel(self, job_id: str) -> None:
        """``scancel``."""
        self.run(Scancel(job_id))

    def accounting(self, job_id: str) -> SlurmJob | None:
        """``sacct --parsable2`` record."""
        if not self.accounting_enabled:
            return None
        return next(iter(self.run(Sacct(job_ids=[job_id]))), None)

    def runs(self, job_id: str) -> list[SlurmJob]:
        """``sacct --duplicates``: every run Slurm made of this job id (none without
        accounting)."""
        if not self.accounting_enabled:
            return []
        return self.run(Sacct(job_ids=[job_id], duplicates=True))

    def nodes(self) -> list[SlurmNode]:
        """``sinfo --json``."""
        return self.run(Sinfo())


class RestBackend:
    """slurmrestd v0.0.38.

    slurmrestd cannot create directories, so explicit log paths inside the job directory are
    refused; the default logs live in the job root, which exists.

    Args:
        client: The client with the service's own token.
        job_env: The environment of submitted jobs.
        admin: Where ``sacctmgr`` and ``scontrol token`` run (root or SlurmUser), if anywhere.
        tokens: Per-person JWTs (needs ``admin``); without them a person's job is refused.
    """

    def __init__(
        self,
        client: RestClient,
        *,
        job_env: Mapping[str, str] | None = None,
        admin: Transport | None = None,
        tokens: UserTokens | None = None,
    ) -> None:
        self.client = client
        self.job_env = dict(job_env) if job_env else None
        self._admin = admin
        self.tokens = tokens

    @property
    def admin(self) -> Transport | None:
        """The administrative transport, if the site configured one."""
        return self._admin

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        """Nothing to create; refuse paths whose directories may not exist."""
        if rendered.explicit_paths:
            raise Invalid.field(
                "stdout_path", "rest", "explicit log paths need the ssh or local transport"
            )

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        """POST ``/job/submit``, with ``run_as``'s own token when given."""
        if run_as is None:
            return self.client.submit(rendered, self.job_env)
        if self.tokens is None:
            raise Invalid.field(
                "run_as",
                "rest_tokens",
                "this REST site has no admin_transport to mint per-person tokens",
            )
        try:
            return self.client.submit(
                rendered, self.job_env, as_user=(run_as, self.tokens.token(run_as))
            )
        except BackendUnavailable as exc:
            if exc.extra.get("http_status") == 401:
                self.tokens.forget(run_as)  # the next try mints a fresh one
            raise

    def find(self, name: str) -> SlurmJob | None:
        """Controller's jobs with this name (accounting keeps only what the controller had)."""
        return latest_submission(j for j in self.client.jobs() if j.name == name)

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        """One ``/jobs`` read for many names."""
        wanted = set(names)
        return _latest_by_name(j for j in self.client.jobs() if j.name in wanted)

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """``/jobs`` filtered, then ``/slurmdb/job`` for jobs the controller forgot."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        found = {j.job_id: j for j in self.client.jobs() if j.job_id in wanted}
        for job_id in wanted:
            if job_id not in found and (record := settled(self.client.accounting(job_id))):
                found[job_id] = record
        return {i: found[i] for i in wanted if i in found}

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        """:meth:`jobs` (``/jobs`` is one read whatever is asked)."""
        return self.jobs(job_ids)

    def cancel(self, job_id: str) -> None:
        """DELETE ``/job/{id}``."""
        self.client.cancel(job_id)

    def accounting(self, job_id: str) -> SlurmJob | None:
        """``/slurmdb/v0.0.38/job/{id}``."""
        return self.client.accounting(job_id)

    def runs(self, job_id: str) -> list[SlurmJob]:
        """The accounting record (v0.0.38 keeps one per job id; earlier runs are not told)."""
        record = self.client.accounting(job_id)
        return [record] if record is not None else []

    def nodes(self) -> list[SlurmNode]:
        """``/nodes``."""
        return self.client.nodes()
