"""One command object per Slurm verb, FirecREST style.

Each object knows its argv (:meth:`build`, a list, never a shell string) and how to read the
command's output (:meth:`parse`, raising :mod:`aifactory.errors` on failure). Transports only
run argv lists, so the same objects work locally and over SSH, and parsers are tested on
recorded real outputs (``tests/fixtures/slurm/``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aifactory.errors import BackendUnavailable, Invalid
from aifactory.executors.slurm.failures import Submission, command_error, submit_error
from aifactory.executors.slurm.from_json import job_from_json, node_from_json
from aifactory.executors.slurm.models import SlurmJob, SlurmNode, base_state, gpus_from_tres

__all__ = [
    "SACCT_FIELDS",
    "Sacct",
    "Sbatch",
    "Scancel",
    "ScontrolShowJob",
    "Sinfo",
    "Squeue",
    "job_from_json",
    "node_from_json",
    "parse_exit_code",
]

# JobName last: it is the only free-text column, so a "|" in some other user's job name
# cannot shift the columns we read (the split stops before it). JobIDRaw, not JobID: a one-task
# array job (--array=3) is 5030_3 in JobID but 5030, the id sbatch printed, in JobIDRaw.
SACCT_FIELDS = (
    "JobIDRaw",
    "State",
    "ExitCode",
    "Start",
    "End",
    "ElapsedRaw",
    "AllocTRES",
    "NodeList",
)
_SACCT_FORMAT = ",".join((*SACCT_FIELDS, "JobName"))
_ACCOUNTING_DISABLED = "accounting storage is disabled"
_SCONTROL_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:.]*)=")


def parse_exit_code(text: str) -> int | None:
    """``"3:0"`` -> 3, ``"0:15"`` -> 143 (128 + signal); ``None`` for empty or odd text."""
    code, _, signal = text.strip().partition(":")
    if not code.isdigit():
        return None
    if signal.isdigit() and int(signal):
        return 128 + int(signal)
    return int(code)


def _epoch(text: str) -> float | None:
    # Printed with SLURM_TIME_FORMAT=%s; "Unknown"/"None"/"0" mean "not (yet) happened".
    text = text.strip()
    return float(text) if text.isdigit() and int(text) > 0 else None


def _fail(verb: str, stdout: str, stderr: str, rc: int, job_id: str | None = None) -> None:
    if rc != 0:
        raise command_error(verb, rc, stdout, stderr, job_id=job_id)


@dataclass(frozen=True)
class Sbatch:
    """``sbatch --parsable``; the script itself goes to stdin, so no file is written anywhere.

    With :attr:`deadline_s` sbatch runs under ``timeout --signal=KILL``: a submission whose
    answer got lost (a cut SSH connection) cannot still be on its way to slurmctld after that
    time, so a lookup by name afterwards tells for certain whether it was submitted.
    """

    deadline_s: float | None = None

    def build(self) -> list[str]:
        """Argv; pass the rendered script as the transport's stdin."""
        argv = ["sbatch", "--parsable"]
        if self.deadline_s is not None:
            argv = ["timeout", "--signal=KILL", f"{max(1, int(self.deadline_s))}", *argv]
        return argv

    def parse(self, stdout: str, stderr: str, returncode: int) -> str:
        """Slurm's job id (``"42"``; ``"42;cluster"`` with ``-M`` is cut to ``"42"``).

        Raises:
            Invalid: Slurm refused the job (its message is kept; the id is consumed anyway).
            BackendUnavailable: Anything else, with ``extra["submission"]`` saying whether
                it was temporary, unreachable or ambiguous (see :mod:`.failures`).
        """
        if returncode != 0:
            raise submit_error("sbatch", returncode, stdout, stderr)
        job_id = stdout.strip().splitlines()[-1].split(";")[0] if stdout.strip() else ""
        if not job_id.isdigit():
            # sbatch said yes but its answer is unreadable: the job may well exist.
            raise BackendUnavailable(
                f"sbatch printed no job id: {stdout.strip()!r}",
                extra={"submission": Submission.AMBIGUOUS.value},
            )
        return job_id


def _load_json(verb: str, stdout: str) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except json.JSONDecodeError as exc:
        raise Invalid(f"{verb} printed no JSON: {stdout[:200]!r}") from exc
    if not isinstance(data, dict):
        raise Invalid(f"{verb} printed unexpected JSON")
    errors = data.get("errors") or []
    if errors:
        # With slurmctld down, squeue --json exits 0 and only lists "Failed while looking for
        # jobs" here: a read that could not be answered means the backend is unavailable.
        text = "; ".join(str(e.get("description") or e.get("error") or e) for e in errors)
        raise BackendUnavailable(f"{verb}: Slurm could not answer: {text}")
    return data


@dataclass(frozen=True)
class SqueueByName:
    """``squeue --name=NAME[,NAME...] --states=all`` in plain format: the idempotency lookup.

    Unlike ``--json`` the plain format honours the filter, so the answer stays small however
    many jobs the controller holds (``squeue --json`` returns all of them, finished ones too).
    :attr:`more` looks up several attempts in one call (a hand-over pass's batch).
    """

    name: str
    more: Sequence[str] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name looked up."""
        return (self.name, *self.more)

    def build(self) -> list[str]:
        """Argv."""
        # %A, not %i: %i lists a one-task array job (--array=3) as 42_[3], %A as 42.
        return ["squeue", "--noheader", "--states=all", "--name=" + ",".join(self.names),
                "--format=%A|%T|%N|%j"]  # fmt: skip

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[SlurmJob]:
        """One job per line: id, state, node list, name."""
        _fail("squeue", stdout, stderr, returncode)
        jobs, names = [], set(self.names)
        for line in stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4 and parts[3] in names:
                job_id, state, nodes, name = parts
                jobs.append(SlurmJob(job_id=job_id, name=name, state=state, nodes=nodes))
        return jobs


@dataclass(frozen=True)
class Squeue:
    """``squeue --json``: every job the controller knows, finished ones until ``MinJobAge``.

    Slurm 22.05 ignores filter options together with ``--json``, so filtering is done here.
    """

    job_ids: Sequence[str] = ()
    name: str | None = None

    def build(self) -> list[str]:
        """Argv."""
        return ["squeue", "--json"]

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[SlurmJob]:
        """Jobs matching :attr:`job_ids` / :attr:`name` (all jobs when neither is set)."""
        _fail("squeue", stdout, stderr, returncode)
        data = _load_json("squeue", stdout)
        wanted = set(self.job_ids)
        jobs = []
        for entry in data.get("jobs") or []:
            job = job_from_json(entry)
            if wanted and job.job_id not in wanted:
                continue
            if self.name is not None and job.name != self.name:
                continue
            jobs.append(job)
        return jobs


@dataclass(frozen=True)
class Sacct:
    """``sacct --parsable2`` for whole allocations (no steps), times as epoch seconds.

    Exit codes come from here rather than ``sacct --json``, which reports every job as
    ``SUCCESS``. Records lag the controller by about half a second. With :attr:`duplicates`
    every run of a requeued job is a record of its own (state ``REQUEUED`` for all but the
    last), which is how each run gets charged.
    """

    job_ids: Sequence[str] = ()
    name: str | None = None
    since: str = "now-14days"
    duplicates: bool = False
    more: Sequence[str] = ()  # further names, looked up with :attr:`name` in one call

    def build(self) -> list[str]:
        """Argv (``env SLURM_TIME_FORMAT=%s`` makes sacct print epoch seconds, zone-free)."""
        argv = ["env", "SLURM_TIME_FORMAT=%s", "sacct", "--parsable2", "--noheader"]
        argv += ["--allocations", f"--format={_SACCT_FORMAT}"]
        if self.duplicates:
            argv.append("--duplicates")
        if self.job_ids:
            argv.append("--jobs=" + ",".join(self.job_ids))
        if self.name is not None:
            # Without --allusers a service user that is not root sees only its own jobs, and
            # people's jobs run as themselves: the idempotency lookup would miss them.
            names = ",".join((self.name, *self.more))
            argv += ["--allusers", f"--name={names}", f"--starttime={self.since}"]
        return argv

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[SlurmJob]:
        """Accounting records; an empty list when the cluster has no accounting storage."""
        if _ACCOUNTING_DISABLED in (stdout + stderr).lower():
            return []
        _fail("sacct", stdout, stderr, returncode)
        jobs = []
        for line in stdout.splitlines():
            cols = line.split("|", len(SACCT_FIELDS))
            if len(cols) != len(SACCT_FIELDS) + 1:
                continue
            job_id, state, exit_code, start, end, elapsed, tres, nodes, name = cols
            if self.name is not None and name != self.name and name not in self.more:
                continue
            jobs.append(
                SlurmJob(
                    job_id=job_id,
                    name=name,
                    state=base_state(state),
                    exit_code=parse_exit_code(exit_code),
                    start=_epoch(start),
                    end=_epoch(end),
                    elapsed_s=float(elapsed) if elapsed.isdigit() else None,
                    gpus=gpus_from_tres(tres),
                    nodes=nodes,
                )
            )
        return jobs


def scontrol_fields(line: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol show -o`` line; values may contain spaces."""
    keys = list(_SCONTROL_KEY.finditer(line))
    fields: dict[str, str] = {}
    for match, following in zip(keys, [*keys[1:], None], strict=True):
        end = following.start() if following is not None else len(line)
        fields[match.group(1)] = line[match.end() : end].strip()
    return fields


@dataclass(frozen=True)
class ScontrolShowJob:
    """``scontrol show job -o ID``: one line per job (per task for arrays)."""

    job_id: str

    def build(self) -> list[str]:
        """Argv."""
        return ["env", "SLURM_TIME_FORMAT=%s", "scontrol", "show", "job", "-o", self.job_id]

    def parse(self, stdout: str, stderr: str, returncode: int) -> SlurmJob:
        """The job's record.

        Raises:
            NotFound: The controller does not know the id (never seen, or past ``MinJobAge``).
        """
        _fail("scontrol", stdout, stderr, returncode, job_id=self.job_id)
        lines = [ln for ln in stdout.splitlines() if ln.strip()]
        if not lines:
            raise command_error("scontrol", 1, "", "Invalid job id specified", job_id=self.job_id)
        f = scontrol_fields(lines[0])
        return SlurmJob(
            job_id=f.get("JobId", self.job_id),
            name=f.get("JobName", ""),
            state=base_state(f.get("JobState", "PENDING")),
            exit_code=parse_exit_code(f.get("ExitCode", "")),
            reason=f.get("Reason", ""),
            start=_epoch(f.get("StartTime", "")),
            end=_epoch(f.get("EndTime", "")) if f.get("JobState") != "RUNNING" else None,
            gpus=gpus_from_tres(f.get("AllocTRES", "")) or None,
            nodes=f.get("NodeList", ""),
        )


@dataclass(frozen=True)
class Scancel:
    """``scancel ID``; cancelling a finished job is a no-op for Slurm too."""

    job_id: str

    def build(self) -> list[str]:
        """Argv."""
        return ["scancel", self.job_id]

    def parse(self, stdout: str, stderr: str, returncode: int) -> None:
        """Nothing on success.

        Raises:
            NotFound: Slurm does not know the id.
            BackendUnavailable: slurmctld could not be reached.
        """
        _fail("scancel", stdout, stderr, returncode, job_id=self.job_id)
        if "Invalid job id" in stderr:
            raise command_error("scancel", 1, stdout, stderr, job_id=self.job_id)


@dataclass(frozen=True)
class Sinfo:
    """``sinfo --json``: the nodes, their GPUs and partitions."""

    partitions: Sequence[str] = field(default_factory=tuple)

    def build(self) -> list[str]:
        """Argv."""
        return ["sinfo", "--json"]

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[SlurmNode]:
        """Nodes (only those in :attr:`partitions` when given)."""
        _fail("sinfo", stdout, stderr, returncode)
        nodes = [node_from_json(n) for n in _load_json("sinfo", stdout).get("nodes") or []]
        if self.partitions:
            wanted = set(self.partitions)
            nodes = [n for n in nodes if wanted & set(n.partitions)]
        return nodes
