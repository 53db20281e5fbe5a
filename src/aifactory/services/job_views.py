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
