"""A user's job spec as one executor attempt: the one mapping the site agent and the CLI's dry
run share, so what `aif submit --dry-run` shows is what a site receives."""

from __future__ import annotations

from typing import Any

from aifactory.domain.jobspec import JobSpec
from aifactory.executors.base import ExecJob

__all__ = ["exec_job", "exec_resources"]


def exec_resources(spec: JobSpec) -> dict[str, Any]:
    """The spec's resources as :class:`ExecJob` fields (memory in MiB, 0 for the whole node)."""
    r = spec.resources

    def mib(gb: float | None) -> int | None:
        return None if gb is None else max(1, round(gb * 1024))

    return {
        "nodes": r.nodes,
        "gpus_per_node": r.gpus_per_node,
        "tasks_per_node": r.tasks_per_node,
        "cpus_per_task": r.cpus_per_task,
        "memory_mb": 0 if r.whole_node_memory else mib(r.memory_gb),
        "memory_per_cpu_mb": mib(r.memory_per_cpu_gb),
        "memory_per_gpu_mb": mib(r.memory_per_gpu_gb),
        "exclusive": r.exclusive,
        "constraint": r.constraint,
        "time_min_s": None if r.time_min is None else float(r.time_min),
    }


def exec_job(
    spec: JobSpec,
    *,
    exec_id: str,
    platform_id: str,
    attempt: int = 1,
    time_limit_s: float | None = None,
    partition: str | None = None,
    array_id: int | None = None,
    array_task: int | None = None,
    run_as: str | None = None,
) -> ExecJob:
    """One attempt of ``spec`` with the environment every job gets.

    Args:
        spec: The validated job spec.
        exec_id: The id executors key the attempt by (with ``attempt``).
        platform_id: The platform's job id, given to the job as ``AIF_JOB_ID``.
        attempt: Attempt number.
        time_limit_s: The job's limit (the spec's when ``None``).
        partition: The site's partition name.
        array_id: The array's id (``AIF_ARRAY_ID``) for an array task.
        array_task: The task index (``SLURM_ARRAY_TASK_ID``).
        run_as: The person's site login.
    """
    env = dict(spec.environment)
    env |= {"AIF_JOB_ID": platform_id, "AIF_ATTEMPT": str(attempt), "AIF_PROJECT": spec.project}
    if spec.checkpoint_dir:
        env["AIF_CHECKPOINT_DIR"] = spec.checkpoint_dir
    if array_id is not None:
        env["AIF_ARRAY_ID"] = str(array_id)
    limit = float(spec.resources.time_limit) if time_limit_s is None else time_limit_s
    return ExecJob(
        job_id=exec_id,
        attempt=attempt,
        argv=spec.argv(),
        script=spec.script,
        args=spec.args,
        env=env,
        workdir=spec.workdir,
        time_limit_s=limit,
        project=spec.project,
        partition=partition,
        launcher=spec.launcher,
        array_task=array_task,
        run_as=run_as,
        **exec_resources(spec),
    )
