"""``squeue --start``: when Slurm expects its pending jobs to start.

A command object like those of :mod:`.commands` (build argv, parse output). Slurm's backfill
scheduler fills in the expected start of a pending job on its next cycle (``bf_interval``,
30 s by default); until then, and for jobs it cannot plan, the column reads ``N/A``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aifactory.executors.estimates import QueueEstimate
from aifactory.executors.slurm.commands import _epoch, _fail

__all__ = ["PendingStart", "SqueueStart", "by_partition"]

#: Job id, partition, expected start, nodes, reason; the name last (free text, may hold "|").
_FORMAT = "%i|%P|%S|%D|%r|%j"


@dataclass(frozen=True, slots=True)
class PendingStart:
    """One pending job as ``squeue --start`` reports it."""

    job_id: str
    partition: str
    start: float | None  # epoch seconds; None while Slurm has no estimate
    nodes: int
    reason: str
    name: str


@dataclass(frozen=True)
class SqueueStart:
    """``squeue --start`` of every pending job, times as epoch seconds."""

    def build(self) -> list[str]:
        """Argv (``SLURM_TIME_FORMAT=%s``: epoch seconds, zone-free)."""
        return ["env", "SLURM_TIME_FORMAT=%s", "squeue", "--start", "--noheader",
                f"--format={_FORMAT}"]  # fmt: skip

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[PendingStart]:
        """One entry per pending job; lines of another shape are skipped.

        Raises:
            BackendUnavailable: slurmctld could not be reached.
        """
        _fail("squeue", stdout, stderr, returncode)
        jobs = []
        for line in stdout.splitlines():
            cols = line.strip().split("|", 5)
            if len(cols) != 6 or not cols[0]:
                continue
            job_id, partition, start, nodes, reason, name = cols
            jobs.append(
                PendingStart(
                    job_id=job_id,
                    partition=partition,
                    start=_epoch(start),
                    nodes=int(nodes) if nodes.isdigit() else 1,
                    reason=reason,
                    name=name,
                )
            )
        return jobs


def by_partition(
    jobs: Sequence[PendingStart], partitions: Mapping[str, str | None]
) -> dict[str, QueueEstimate]:
    """The estimates of each platform partition, from the pending jobs of its Slurm partition.

    Args:
        jobs: What :class:`SqueueStart` read.
        partitions: Platform partition name -> Slurm partition (``None``: the cluster's default,
            whose name the platform does not know: every pending job counts there).
    """
    out: dict[str, QueueEstimate] = {}
    for name, slurm in partitions.items():
        mine = [j for j in jobs if slurm is None or slurm in j.partition.split(",")]
        starts = {j.job_id: j.start for j in mine if j.start is not None}
        out[name] = QueueEstimate(len(mine), max(starts.values(), default=None), starts)
    return out
