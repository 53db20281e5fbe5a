"""Slurm's JSON (``squeue --json``, ``sinfo --json``, slurmrestd ``/slurm/v0.0.38``) as models.

The CLI's ``--json`` output and slurmrestd share the v0.0.38 data format, so one reader serves
both backends.
"""

from __future__ import annotations

import re
from typing import Any

from aifactory.executors.slurm.models import (
    SlurmJob,
    SlurmNode,
    base_state,
    decode_wait_status,
    gpus_from_tres,
)

__all__ = ["job_from_json", "node_from_json"]


def _json_epoch(job: dict[str, Any], key: str) -> float | None:
    value = job.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else None


def _requested_gpus(job: dict[str, Any]) -> int | None:
    # "gres:gpu:2" / "gres:gpu:h100:2" (per node, or per job); the grant equals the request.
    for key, per_node in (("tres_per_node", True), ("tres_per_job", False)):
        match = re.search(r"gpu(?::[^:,]+)?:(\d+)", str(job.get(key) or ""))
        if match:
            count = int(match.group(1))
            return count * int(job.get("node_count") or 1) if per_node else count
    return None


def _json_gpus(job: dict[str, Any]) -> int | None:
    tres = str(job.get("tres_alloc_str") or "")
    if "gres/gpu" in tres:
        return gpus_from_tres(tres)
    # Without AccountingStorageTRES=gres/gpu the TRES string has no GPUs; gres_detail lists
    # each node's grant ("gpu:2(IDX:0-1)") while the job runs, the request remains afterwards.
    detail = job.get("gres_detail") or []
    total = 0
    for entry in detail:
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", str(entry))
        total += int(match.group(1)) if match else 0
    if total:
        return total
    requested = _requested_gpus(job)
    if requested is not None:
        return requested
    return 0 if tres else None


def job_from_json(job: dict[str, Any]) -> SlurmJob:
    """A :class:`SlurmJob` from one entry of ``squeue --json`` or REST ``/slurm/v0.0.38/jobs``."""
    state = base_state(str(job.get("job_state") or "PENDING"))
    raw_exit = job.get("exit_code")
    started = state not in ("PENDING", "REQUEUED", "REQUEUE_HOLD")
    finished = state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
    start = _json_epoch(job, "start_time") if started else None
    end = _json_epoch(job, "end_time") if finished else None
    return SlurmJob(
        job_id=str(job.get("job_id")),
        name=str(job.get("name") or ""),
        state=state,
        # The raw wait status (768 for exit 3); only meaningful once the job ended.
        exit_code=decode_wait_status(int(raw_exit))
        if finished and isinstance(raw_exit, int)
        else None,
        reason=str(job.get("state_reason") or ""),
        start=start,
        end=end,
        elapsed_s=(end - start) if start is not None and end is not None else None,
        gpus=_json_gpus(job),
        nodes=str(job.get("nodes") or ""),
        restarts=int(job.get("restart_cnt") or 0),
    )


def _node_gpus(gres: str) -> tuple[int, str | None]:
    total, gpu_type = 0, None
    for item in filter(None, gres.split(",")):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] != "gpu" or not parts[-1].isdigit():
            continue
        total += int(parts[-1])
        gpu_type = parts[1] if len(parts) == 3 else gpu_type
    return total, gpu_type


def node_from_json(node: dict[str, Any]) -> SlurmNode:
    """A :class:`SlurmNode` from ``sinfo --json`` or REST ``/nodes``."""
    gpus, gpu_type = _node_gpus(str(node.get("gres") or ""))
    return SlurmNode(
        name=str(node.get("name")),
        state=str(node.get("state") or "unknown").lower(),
        cpus=int(node.get("cpus") or 0),
        gpus=gpus,
        gpu_type=gpu_type,
        partitions=tuple(str(p) for p in node.get("partitions") or ()),
    )
