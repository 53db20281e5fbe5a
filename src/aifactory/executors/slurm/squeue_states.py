"""``squeue --jobs=IDS --Format=...``: the poll of the platform's own live jobs.

A command object like those of :mod:`.commands` (build argv, parse output), kept apart because
it is the one read a site agent makes every ``agent_interval_s``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aifactory.executors.slurm.commands import _epoch, _fail
from aifactory.executors.slurm.models import (
    SlurmJob,
    base_state,
    decode_wait_status,
    gpus_from_tres,
)

__all__ = ["SqueueStates"]

#: ``squeue --Format`` columns of a poll; Name last, as in :data:`SACCT_FIELDS`.
_STATE_COLUMNS = ("JobID", "State", "exit_code", "StartTime", "EndTime", "Reason", "tres-alloc",
                  "tres-per-node", "tres-per-job", "NumNodes", "NodeList", "Name")  # fmt: skip
_UNSTARTED = ("PENDING", "REQUEUED", "REQUEUE_HOLD")
_UNFINISHED = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")


def _requested_gpus(per_node: str, per_job: str, nodes: str, alloc: str) -> int | None:
    """GPUs requested (``gres:gpu:2``, ``gres/gpu:h100:2``): Slurm grants what was asked.

    Without ``AccountingStorageTRES=gres/gpu`` the allocated TRES never name GPUs, so the
    request is the figure (0 for a job that asked for none; ``None`` when nothing is known).
    """
    for text, times in ((per_node, int(nodes) if nodes.isdigit() else 1), (per_job, 1)):
        match = re.search(r"gpu(?::[^:,]+)?:(\d+)", text)
        if match:
            return int(match.group(1)) * times
    return 0 if alloc else None


@dataclass(frozen=True)
class SqueueStates:
    """``squeue --jobs=IDS --Format=...``: the poll of the platform's own live jobs.

    Unlike ``--json`` (which in 22.05 ignores filters and prints every job the controller
    holds: 9 MB and about a second for 3,000 jobs) the plain format honours ``--jobs``, so the
    answer is one short line per polled job (about 0.05 s). It has no restart count: that
    comes from :class:`Squeue` when an ended job is charged (``SlurmExecutor.usage``).
    """

    job_ids: Sequence[str]

    def build(self) -> list[str]:
        """Argv (epoch times through ``SLURM_TIME_FORMAT``, ``|`` after every column)."""
        columns = ",".join(f"{c}:|" for c in _STATE_COLUMNS)
        return ["env", "SLURM_TIME_FORMAT=%s", "squeue", "--noheader", "--states=all",
                "--jobs=" + ",".join(self.job_ids), f"--Format={columns}"]  # fmt: skip

    def parse(self, stdout: str, stderr: str, returncode: int) -> list[SlurmJob]:
        """One job per line; none when the controller knows none of the ids."""
        if returncode != 0 and "Invalid job id" in stdout + stderr:
            return []  # every id was forgotten (squeue fails only when none is known)
        _fail("squeue", stdout, stderr, returncode)
        wanted, jobs = set(self.job_ids), []
        for line in stdout.splitlines():
            cols = line.split("|", len(_STATE_COLUMNS) - 1)
            if len(cols) != len(_STATE_COLUMNS) or cols[0].strip() not in wanted:
                continue
            jobs.append(_state_row([c.strip() for c in cols]))
        return jobs


def _state_row(cols: list[str]) -> SlurmJob:
    job_id, state, code, start, end, reason, alloc, per_node, per_job, count, nodes, name = cols
    name = name[:-1] if name.endswith("|") else name  # the suffix after the free-text column
    state = base_state(state)
    finished = state not in _UNFINISHED
    started_at = _epoch(start) if state not in _UNSTARTED else None
    ended_at = _epoch(end) if finished else None
    gpus = gpus_from_tres(alloc) if "gres/gpu" in alloc else None
    return SlurmJob(
        job_id=job_id,
        name=name,
        state=state,
        # The raw wait status (768 for exit 3), as in --json; only meaningful once ended.
        exit_code=decode_wait_status(int(code)) if finished and code.isdigit() else None,
        reason=reason,
        start=started_at,
        end=ended_at,
        elapsed_s=None if started_at is None or ended_at is None else ended_at - started_at,
        gpus=gpus if gpus is not None else _requested_gpus(per_node, per_job, count, alloc),
        nodes=nodes,
    )
