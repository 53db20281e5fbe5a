"""The broker's reconciler: places pending jobs (new, waiting for capacity, or retried) FIFO."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import Job
from aifactory.db.types import utcnow
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import jobs as job_service

BATCH = 200


def place_pending(db: Database, capacity: Mapping[str, int | None]) -> int:
    """One pass over the oldest pending jobs; returns how many were placed."""
    with db.session() as s:
        ids = s.scalars(
            select(Job.id).where(Job.state == JobState.PENDING).order_by(Job.id).limit(BATCH)
        ).all()
    placed = 0
    for job_id in ids:
        with db.session() as s:
            job = s.get_one(Job, job_id, with_for_update=True)
            if job.state != JobState.PENDING:
                continue
            if job.cancel_requested:
                job_service.move(s, job, JobState.CANCELLED, "cancelled while pending", utcnow())
                continue
            spec = JobSpec.model_validate(job.spec)
            placed += job_service.place(s, job, spec, utcnow(), capacity)
    return placed
