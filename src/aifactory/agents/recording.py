"""Recording what a site's scheduler reports: state changes, ends, charges and retries.

Each function runs inside one fenced transaction the site agent opened for one job. An end is
charged once: the ledger entry's effect key is (job, attempt), so a second settlement of the
same attempt rolls back.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.orm import Session

from aifactory.db.models import Job, JobAttempt, Partition, StaleAttempt
from aifactory.db.types import utcnow
from aifactory.domain.jobs import RETRYABLE, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.ledger import usage_milli
from aifactory.executors import ExecState, ExecStatus, ExecUsage
from aifactory.services import jobs as job_service
from aifactory.services import ledger

STATE = {
    ExecState.QUEUED: JobState.QUEUED,
    ExecState.RUNNING: JobState.RUNNING,
    ExecState.COMPLETED: JobState.COMPLETED,
    ExecState.FAILED: JobState.FAILED,
    ExecState.CANCELLED: JobState.CANCELLED,
    ExecState.TIMED_OUT: JobState.TIMED_OUT,
    ExecState.NODE_FAILED: JobState.NODE_FAILED,
    ExecState.PREEMPTED: JobState.PREEMPTED,
}
LOST_REASON = "lost: Slurm no longer reports it and accounting has no record"


def mark_lost(now: datetime, s: Session, job: Job) -> None:
    """The scheduler stopped reporting the job: lost, until accounting or the grace says."""
    job.lost_since = now
    attempt = next(a for a in job.attempts if a.attempt == job.attempt)
    attempt.state = JobState.LOST
    why = "lost: the scheduler no longer reports it; waiting for its accounting record"
    job_service.move(s, job, JobState.LOST, why, now)


def give_up_lost(site: str, now: datetime, s: Session, job: Job) -> None:
    """No record within the grace: fail it, charge nothing, release its reservation."""
    attempt = next(a for a in job.attempts if a.attempt == job.attempt)
    status = ExecStatus(state=ExecState.FAILED, message=LOST_REASON)
    finish(site, s, job, attempt, JobState.FAILED, status, None, charge=False)


def apply_status(
    site: str, status: ExecStatus, usage: ExecUsage | None, s: Session, job: Job
) -> None:
    """Record what the executor reports about the job's current attempt."""
    target = STATE[status.state]
    attempt = next(a for a in job.attempts if a.attempt == job.attempt)
    if status.started_at and job.started_at is None:
        job.started_at = _dt(status.started_at)
    attempt.started_at = attempt.started_at or _dt(status.started_at)
    if target == JobState(job.state):
        return
    if target in (JobState.QUEUED, JobState.RUNNING):
        job.lost_since = None  # a lost job that reappeared
        if not (target == JobState.QUEUED and job.state == JobState.RUNNING):
            job_service.move(s, job, target, status.message, utcnow())
        attempt.state = job.state
        return
    finish(site, s, job, attempt, target, status, usage)


def finish(
    site: str,
    s: Session,
    job: Job,
    attempt: JobAttempt,
    target: JobState,
    status: ExecStatus,
    usage: ExecUsage | None,
    *,
    charge: bool = True,
    retry: bool | None = None,
) -> None:
    """Record the attempt's end and charge its run time, once: the ledger entry's effect
    key is (job, attempt), so a second settlement of the same attempt rolls back.

    ``retry`` True starts a new attempt whatever the spec's policy says (failover moves a job
    that never started); None asks the policy (:func:`retry_wanted`)."""
    job.exit_code, job.ended_at = status.exit_code, _dt(status.ended_at) or utcnow()
    job.lost_since = None
    elapsed = _elapsed(attempt.started_at, job.ended_at, usage, status)
    elapsed = elapsed if charge else timedelta(0)
    factor = Decimal(str(s.get_one(Partition, job.partition_id).charge_factor))
    used = usage_milli(job.gpus, elapsed, factor) if job.gpus else 0
    if job.allocation_id is not None:
        effect = (job.id, job.attempt)
        ledger.settle(s, job.allocation_id, job.reserved_milli, used, site, effect)
    job.reserved_milli, job.charged_milli = 0, job.charged_milli + used
    attempt.state, attempt.exit_code = target, status.exit_code
    attempt.elapsed_s = elapsed.total_seconds()
    attempt.ended_at, attempt.charged_milli, attempt.message = (
        job.ended_at,
        used,
        status.message,
    )
    reason = status.message or f"exit code {status.exit_code}"
    job_service.move(s, job, target, reason, utcnow())
    if retry or (retry is None and retry_wanted(job, target)):
        job.attempt += 1
        job.backend_id, job.exit_code, job.ended_at = None, None, None
        job_service.move(s, job, JobState.PENDING, f"retry: attempt {job.attempt}", utcnow())


def retry_wanted(job: Job, target: JobState) -> bool:
    """Whether the spec's retry policy asks for another attempt after ``target``."""
    spec = JobSpec.model_validate(job.spec)
    return (
        target in RETRYABLE
        and not job.cancel_requested
        and str(target) in spec.retry.on
        and job.attempt < spec.retry.max_attempts
    )


def _dt(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def _elapsed(
    started: datetime | None, ended: datetime, usage: ExecUsage | None, status: ExecStatus
) -> timedelta:
    """Recorded start to end, exact (the executor's figure only if no start was recorded).

    Where the scheduler ran the attempt more than once (a site that requeues jobs itself),
    its figure covers every run and exceeds the last run's span: then that figure is charged.
    """
    if usage is None or started is None:
        return timedelta(seconds=usage.elapsed_s if usage else 0)
    if status.started_at is not None and status.ended_at is not None:
        last_run = status.ended_at - status.started_at
        if usage.elapsed_s >= last_run + 1:
            return timedelta(seconds=usage.elapsed_s)
    return max(ended - started, timedelta(0))


def move_elsewhere(site: str, why: str, stale: bool, now: datetime, s: Session, job: Job) -> None:
    """Failover: a job not started at a site that takes no new work goes back to pending.

    A placed job only gives its reservation back. A job handed to the scheduler ends its
    attempt as preempted (nothing charged) and starts a new one for the broker to place at
    another entitled site; ``stale`` records the old attempt for its site's agent to cancel
    there when the site answers (see :class:`StaleAttempt`).
    """
    if job.state == JobState.PLACED:
        job_service.release_reservation(s, job, site)
        job_service.move(s, job, JobState.PENDING, f"failover: {why}", now)
        return
    attempt = next(a for a in job.attempts if a.attempt == job.attempt)
    status = ExecStatus(state=ExecState.PREEMPTED, message=f"moved: {why}", ended_at=_ts(now))
    note_stale(s, job, attempt, why, cancelled=not stale, now=now)
    finish(site, s, job, attempt, JobState.PREEMPTED, status, None, charge=False, retry=True)


def fail_over_running(
    site: str, why: str, since: datetime, cancelled: bool, now: datetime, s: Session, job: Job
) -> None:
    """Failover: a managed running job at a site that is gone ends as node_failed (charged up
    to ``since``, the last time the site was known to run it) and is retried by its policy."""
    attempt = next(a for a in job.attempts if a.attempt == job.attempt)
    started = attempt.started_at or job.started_at
    ran = max((since - started).total_seconds(), 0.0) if started is not None else 0.0
    usage = ExecUsage(gpus=job.gpus, elapsed_s=ran)
    end = max(since, started) if started is not None else since
    status = ExecStatus(
        state=ExecState.NODE_FAILED, message=f"node_failed: {why}", ended_at=_ts(end)
    )
    note_stale(s, job, attempt, why, cancelled=cancelled, now=now)
    finish(site, s, job, attempt, JobState.NODE_FAILED, status, usage)


def note_stale(
    s: Session, job: Job, attempt: JobAttempt, why: str, *, cancelled: bool, now: datetime
) -> None:
    """Remember an attempt that stops being current, for its site's agent to cancel there."""
    if attempt.backend_id:
        s.add(
            StaleAttempt(
                job_id=job.id,
                attempt=attempt.attempt,
                factory_id=attempt.factory_id,
                backend_id=attempt.backend_id,
                reason=why,
                created_at=now,
                cancelled_at=now if cancelled else None,
            )
        )


def _ts(at: datetime) -> float:
    return at.timestamp()
