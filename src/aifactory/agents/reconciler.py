"""The broker's reconciler: gives every pending job a place, a reason to wait, or a failure.

Pending jobs are new submissions that found no room, jobs waiting for a site or for budget,
and retried attempts. Each pass looks at all of them, in a fair order across projects (one job
of each project in turn, oldest first), so no project's backlog holds another's jobs back. A job
that can never run as asked (its allocation expired or spent, no entitled site that could ever
fit it) fails with the reason. Each job is examined in its own fenced transaction; one broken
job is logged and skipped, never a stop for the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from itertools import chain, zip_longest

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from aifactory.agents.leases import LeaseLost
from aifactory.db.engine import Database
from aifactory.db.models import Job
from aifactory.db.types import utcnow
from aifactory.db.wake import site_topic, wake
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import jobs as job_service

log = logging.getLogger(__name__)
Fence = Callable[[Session], None]


def fair_order(rows: Iterable[tuple[int, str]]) -> list[int]:
    """Job ids taking one job of each project in turn; projects and jobs oldest first."""
    queues: dict[str, list[int]] = {}
    for job_id, project in rows:
        queues.setdefault(project, []).append(job_id)
    rounds = zip_longest(*queues.values())
    return [job_id for job_id in chain.from_iterable(rounds) if job_id is not None]


def place_pending(db: Database, capacity: Mapping[str, int | None], fence: Fence) -> int:
    """One pass over every pending job; returns how many were placed."""
    with db.session() as s:
        rows = s.execute(
            select(Job.id, Job.project_code).where(Job.state == JobState.PENDING).order_by(Job.id)
        ).all()
    return sum(_examine(db, job_id, capacity, fence) for job_id in fair_order(rows))


def _examine(db: Database, job_id: int, capacity: Mapping[str, int | None], fence: Fence) -> int:
    try:
        with db.session() as s:
            fence(s)
            job = s.get(Job, job_id)
            if job is None or job.state != JobState.PENDING:
                return 0
            return _decide(s, job, capacity)
    except LeaseLost:
        raise
    except (StaleDataError, IntegrityError):
        return 0  # changed meanwhile (cancelled, placed by another pass): the next pass sees it
    except Exception:
        log.exception("pending job %s could not be examined; the others go on", job_id)
        return 0


def _decide(s: Session, job: Job, capacity: Mapping[str, int | None]) -> int:
    now = utcnow()
    if job.cancel_requested:
        job_service.move(s, job, JobState.CANCELLED, "cancelled while pending", now)
        return 0
    try:
        spec = JobSpec.model_validate(job.spec)
    except ValidationError as exc:
        job_service.move(s, job, JobState.FAILED, f"its spec is no longer valid: {exc}", now)
        return 0
    before = job.reason
    if job_service.place(s, job, spec, now, capacity):
        wake(s, site_topic(job.factory_id or 0))
        return 1
    if (job.placement or {}).get("waiting"):
        if job.reason == before:
            s.rollback()  # nothing new to say: write nothing
        return 0
    job_service.move(s, job, JobState.FAILED, f"can never run as asked: {job.reason}", now)
    return 0
