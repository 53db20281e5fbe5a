"""Read models for jobs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel


class JobAttemptView(BaseModel):
    attempt: int
    factory: str
    backend_id: str | None
    state: str
    exit_code: int | None
    started_at: datetime | None
    ended_at: datetime | None
    elapsed_s: float
    charged_gpu_hours: Decimal
    message: str


class JobTransitionView(BaseModel):
    at: datetime
    from_state: str
    to_state: str
    reason: str


class JobView(BaseModel):
    id: int
    name: str
    project: str
    owner: str
    state: str
    attempt: int
    gpus: int
    time_limit_s: int
    factory: str | None
    partition: str | None
    reserved_gpu_hours: Decimal
    charged_gpu_hours: Decimal
    exit_code: int | None
    reason: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    array_id: int | None = None
    array_task: int | None = None
    spec: dict[str, Any] | None = None
    attempts: list[JobAttemptView] = []
    transitions: list[JobTransitionView] = []


class CandidateView(BaseModel):
    """One site (partition) the job's project is entitled to, as placement sees it now.

    ``verdict``: ``chosen`` (the job is placed there), ``would start`` (it fits the GPUs free
    now), ``waits`` (it fits the site but waits for GPUs or its turn) or ``rejected`` (a hard
    constraint: hardware, country, budget, an operational site). ``est_start_s`` counts from
    now; ``basis`` says where it comes from: ``slurm`` (the site scheduler's own estimate),
    ``queue`` (running jobs' predicted ends and the work queued ahead), ``free`` (GPUs free
    now), ``reservation`` (the broker's promise to the job next in line), ``placed``.
    """

    site: str
    verdict: str
    reason: str
    free_gpus: int | None = None
    total_gpus: int | None = None
    queued_gpu_hours: float | None = None
    running_jobs: int | None = None
    est_start_s: float | None = None
    basis: str | None = None
    charge_factor: float | None = None
    preferred: bool = False


class PlacementView(BaseModel):
    """Why the broker put a job where it did (or nowhere yet)."""

    job_id: int
    state: str
    policy: str
    decided_at: datetime | None
    chosen: str | None
    ranked: list[str]
    est_start_s: dict[str, float]
    rejected: dict[str, str]
    waiting: str | None
    candidates: list[CandidateView] = []


class JobPage(BaseModel):
    jobs: list[JobView]
    next_before: int | None


class LogChunk(BaseModel):
    job_id: int
    stream: str
    offset: int
    next_offset: int
    text: str
    finished: bool
