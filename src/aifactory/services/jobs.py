"""Jobs: submit once, placed by the broker's policy, run by a site agent, charged exactly.

Placement happens here (at submit and again for pending jobs); the reservation of
GPUs x time limit x charge factor is taken when a job is placed, so queued work can never
overspend an allocation. Site agents move placed jobs on (see ``agents/site_agent.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from aifactory.broker import admission
from aifactory.broker.placement import JobRequest, PlacementPolicy
from aifactory.db.models import (
    Job,
    JobTransition,
)
from aifactory.domain.jobs import JobState, check_move
from aifactory.domain.ledger import charge_milli
from aifactory.errors import QuotaExceeded
from aifactory.services import ledger
from aifactory.services.candidates import Candidate

POLICY = "broker"


def placement_record(
    now: datetime,
    ranked: Sequence[str] = (),
    rejected: Mapping[str, str] | None = None,
    *,
    chosen: str | None = None,
    waiting: str | None = None,
    est_start: Mapping[str, datetime] | None = None,
) -> dict[str, Any]:
    """What a job's placement field keeps: the decision, and starts only where they are known
    (now where it was placed, the reservation's start where it is next in line)."""
    starts = {chosen: 0.0} if chosen else {}
    starts.update({k: round((v - now).total_seconds(), 1) for k, v in (est_start or {}).items()})
    return {
        "policy": POLICY,
        "at": now.isoformat(),
        "chosen": chosen,
        "ranked": list(ranked),
        "rejected": dict(rejected or {}),
        "est_start_s": starts,
        "waiting": waiting,
    }


def waits_for(
    policy: PlacementPolicy,
    request: JobRequest,
    candidates: list[Candidate],
    rejected: Mapping[str, str],
    now: datetime,
) -> str | None:
    """Why a job no site takes now could still run later, or None when it never can
    (``broker.admission.waits_for``, the words the broker's passes write)."""
    return admission.waits_for(policy, request, candidates, rejected, now.timestamp())


def move(session: Session, job: Job, target: JobState, reason: str, at: datetime) -> None:
    """The one way a job changes state; illegal moves raise ``Conflict``."""
    current = JobState(job.state)
    check_move(current, target)
    job.state = target
    job.updated_at = at
    if reason:
        job.reason = reason
    _record(session, job, current, target, reason, at)


def release_reservation(session: Session, job: Job, actor: str) -> None:
    """Give back an unused reservation (cancelled before running, or being re-placed)."""
    if job.reserved_milli and job.allocation_id is not None:
        effect = (job.id, job.attempt)
        ledger.settle(session, job.allocation_id, job.reserved_milli, 0, actor, effect)
    job.reserved_milli = 0


def try_reserve(session: Session, job: Job, site: Candidate, now: datetime) -> str | None:
    """Reserve the job's budget on ``site`` and place it there; or say why the budget is short."""
    amount = reservation_milli(job, site)
    try:  # a refusal writes nothing (the lock's no-op write aside): no savepoint needed
        if amount:
            ledger.reserve(session, site.allocation_id, amount, "broker", (job.id, job.attempt))
    except QuotaExceeded as exc:
        return exc.message
    job.allocation_id, job.partition_id, job.factory_id = (
        site.allocation_id,
        site.partition_id,
        site.factory_id,
    )
    job.reserved_milli = amount
    move(session, job, JobState.PLACED, f"placed on {site.view.name}", now)
    return None


def _record(session: Session, job: Job, old: str, new: str, reason: str, at: datetime) -> None:
    session.add(JobTransition(job_id=job.id, at=at, from_state=old, to_state=new, reason=reason))


def reservation_milli(job: Job, site: Candidate) -> int:
    """What placing ``job`` on ``site`` reserves: GPUs x time limit x the charge factor."""
    return charge_milli(job.gpus * job.time_limit_s, Decimal(str(site.charge_factor)))
