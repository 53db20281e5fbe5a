"""Typed results of Slurm commands and the mapping of Slurm job states to executor states.

Every parser (CLI or REST) produces these models, so the executor never looks at raw output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aifactory.executors.base import ExecState

__all__ = [
    "SLURM_STATES",
    "STATE_MESSAGES",
    "SlurmJob",
    "SlurmNode",
    "base_state",
    "decode_wait_status",
    "exec_state",
    "gpus_from_tres",
]

# Every Slurm 22.05 job state (squeue/sacct/scontrol spellings) and what the platform calls it
# (docs/slurm.md, "How jobs end"). The platform submits with --no-requeue, so a node failure or
# a preemption ends the Slurm job and managed retry decides what follows; REQUEUED only shows
# up where a site forces requeueing anyway (every run is then charged, see SlurmExecutor.usage).
# SUSPENDED keeps its allocation, so it still counts as running for accounting.
SLURM_STATES: dict[str, ExecState] = {
    "PENDING": ExecState.QUEUED,
    "REQUEUED": ExecState.QUEUED,
    "REQUEUE_HOLD": ExecState.QUEUED,
    "REQUEUE_FED": ExecState.QUEUED,
    "RESV_DEL_HOLD": ExecState.QUEUED,
    "CONFIGURING": ExecState.RUNNING,
    "RUNNING": ExecState.RUNNING,
    "COMPLETING": ExecState.RUNNING,
    "RESIZING": ExecState.RUNNING,
    "SIGNALING": ExecState.RUNNING,
    "STAGE_OUT": ExecState.RUNNING,
    "STOPPED": ExecState.RUNNING,
    "SUSPENDED": ExecState.RUNNING,
    "COMPLETED": ExecState.COMPLETED,
    "FAILED": ExecState.FAILED,
    "OUT_OF_MEMORY": ExecState.FAILED,
    "SPECIAL_EXIT": ExecState.FAILED,
    "DEADLINE": ExecState.FAILED,
    "CANCELLED": ExecState.CANCELLED,
    "REVOKED": ExecState.CANCELLED,
    "TIMEOUT": ExecState.TIMED_OUT,
    "NODE_FAIL": ExecState.NODE_FAILED,
    "BOOT_FAIL": ExecState.NODE_FAILED,
    "PREEMPTED": ExecState.PREEMPTED,
}

#: Why a job ended, in words, for the states whose name alone says little to a user.
STATE_MESSAGES: dict[str, str] = {
    "OUT_OF_MEMORY": "out of memory",
    "DEADLINE": "Slurm deadline reached",
    "SPECIAL_EXIT": "special exit (held by Slurm)",
    "REVOKED": "revoked (ran on another cluster)",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node failed to boot",
    "PREEMPTED": "preempted",
}

# sacct/squeue abbreviations seen in non-parsable output; --parsable2 prints full names.
_ABBREVIATIONS = {
    "PD": "PENDING",
    "R": "RUNNING",
    "CG": "COMPLETING",
    "CD": "COMPLETED",
    "F": "FAILED",
    "CA": "CANCELLED",
    "TO": "TIMEOUT",
    "NF": "NODE_FAIL",
    "PR": "PREEMPTED",
    "OOM": "OUT_OF_MEMORY",
    "BF": "BOOT_FAIL",
    "DL": "DEADLINE",
}

_GPU_TRES = re.compile(r"(?:^|,)gres/gpu(?::[^=,]+)?=(\d+)")


def base_state(raw: str) -> str:
    """The bare state name from a Slurm spelling (``"CANCELLED by 0"``, ``"CANCELLED+"``)."""
    word = raw.strip().split(" ", 1)[0].rstrip("+").upper()
    return _ABBREVIATIONS.get(word, word)


def exec_state(raw: str) -> ExecState:
    """Map a Slurm state to :class:`ExecState`.

    Unknown states (a newer Slurm) are reported as queued: the attempt is neither charged nor
    retried until a known state arrives, which is the safe side.
    """
    return SLURM_STATES.get(base_state(raw), ExecState.QUEUED)


def decode_wait_status(status: int) -> int:
    """Turn a raw wait status (squeue --json, REST ``/slurm/``) into a shell-style exit code.

    Exit 3 is reported as 768 and a kill by signal 9 as 9; the executor contract wants 3 and
    128 + 9.
    """
    signal = status & 0x7F
    if signal:
        return 128 + signal
    return (status >> 8) & 0xFF


def gpus_from_tres(tres: str) -> int:
    """Sum of ``gres/gpu`` counts in a TRES string (``cpu=2,gres/gpu=3,gres/gpu:h100=3``).

    A typed count repeats the untyped one, so only untyped entries count when both appear.
    """
    untyped = re.findall(r"(?:^|,)gres/gpu=(\d+)", tres)
    if untyped:
        return sum(int(n) for n in untyped)
    return sum(int(n) for n in _GPU_TRES.findall(tres))


@dataclass(frozen=True)
class SlurmJob:
    """One Slurm job as any command or the REST API reports it.

    Attributes:
        job_id: Slurm's job id, as text (``"42"``).
        name: Job name (``aif-<platform job id>-<attempt>`` for the platform's own jobs).
        state: Bare Slurm state (``"RUNNING"``).
        exit_code: Shell-style exit code (128 + signal when killed), ``None`` if unknown.
        reason: Slurm's reason text (``"Resources"``, ``"NonZeroExitCode"``), may be empty.
        start: Epoch seconds the job started, ``None`` if it never did.
        end: Epoch seconds it ended, ``None`` while not terminal.
        elapsed_s: Seconds it ran, when the source reports it.
        gpus: GPUs allocated to the whole job, ``None`` if the source does not say.
        nodes: Node list expression (``"n[1-2]"``), may be empty.
        restarts: How often Slurm requeued and restarted the job (``restart_cnt``); 0 where
            the source does not say.
    """

    job_id: str
    name: str = ""
    state: str = "PENDING"
    exit_code: int | None = None
    reason: str = ""
    start: float | None = None
    end: float | None = None
    elapsed_s: float | None = None
    gpus: int | None = None
    nodes: str = ""
    restarts: int = 0

    @property
    def exec_state(self) -> ExecState:
        """The platform's name for :attr:`state`."""
        return exec_state(self.state)

    @property
    def never_ran(self) -> bool:
        """A rejected submission: Slurm consumed the id but allocated nothing."""
        return self.nodes in ("", "None assigned", "(null)")


@dataclass(frozen=True)
class SlurmNode:
    """One node as ``sinfo --json`` or REST ``/nodes`` reports it.

    Attributes:
        name: Node name.
        state: Slurm node state, lower case (``"idle"``, ``"mixed"``, ``"down"``).
        cpus: CPUs on the node.
        gpus: GPUs configured (sum over GPU types).
        gpu_type: The GPU type when the node's gres names one (``"h100"``), else ``None``.
        partitions: Partitions the node belongs to.
    """

    name: str
    state: str
    cpus: int
    gpus: int
    gpu_type: str | None
    partitions: tuple[str, ...]
