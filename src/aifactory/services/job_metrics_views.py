"""Read models for a job's training metrics (light: the CLI imports them without a database)."""

from __future__ import annotations

from pydantic import BaseModel


class MetricSeries(BaseModel):
    """One key's values by step, steps in the order the job reported them."""

    key: str
    steps: list[int]
    values: list[float]


class JobMetrics(BaseModel):
    """The ``step=N key=value`` series of a job's current attempt, read from its stdout."""

    job_id: int
    attempt: int
    finished: bool
    truncated: bool  # parsed from the end of a long log only
    series: list[MetricSeries]
