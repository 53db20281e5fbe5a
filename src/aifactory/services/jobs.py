"""Jobs: submit once, placed by the broker's policy, run by a site agent, charged exactly.

Placement happens here (at submit and again for pending jobs); the reservation of
GPUs x time limit x charge factor is taken when a job is placed, so queued work can never
overspend an allocation. Site agents move placed jobs on (see ``agents/site_agent.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from aifactory.broker import backfill
from aifactory.broker.placement import (
    JobRequest,
    PlacementPolicy,
    get_placement_policy,
)
from aifactory.db.engine import begin_write
from aifactory.db.models import (
    Country,
    Job,
    JobTransition,
    Project,
    ProjectMember,
    SiteQueue,
)
from aifactory.db.wake import BROKER, site_topic, wake
from aifactory.domain.jobs import JobState, check_move
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.ledger import charge_milli
from aifactory.errors import Conflict, FieldError, Invalid, QuotaExceeded
from aifactory.services import ledger
from aifactory.services.candidates import Candidate, job_request, site_candidates
from aifactory.services.job_queries import Names
from aifactory.services.permissions import Principal

POLICY = "broker"


class Submitted(NamedTuple):
    """A stored submission: its (first) job and the names its view needs."""

    job: Job
    names: Names


def submit(
    session: Session,
    who: Principal,
    spec: JobSpec,
    now: datetime,
    capacity: Mapping[str, int | None],
) -> Submitted:
    """Store a job (or an array's tasks) and try to place it; refuse at once when no site
    could ever run it.

    The sites are read once, and an array's tasks share that view. Where each job goes is
    decided (budgets checked under the allocations' locks) before the jobs are stored, so
    each is inserted once in its final state, in one multi-row statement for an array.
    """
    _check_project(session, who, spec)
    begin_write(session)  # SQLite: one writer from here, so the free GPUs read stay free
    jobs = _new_jobs(session, who, spec, now)
    sites = site_candidates(session, spec.project, now, capacity)
    request, queues, promised = job_request(spec), _Queues(session), dict[int, int]()
    _, limit = spec.tasks()
    chosen: list[Candidate | None] = []
    with session.no_autoflush:
        for job in jobs:
            if limit is not None and sum(c is not None for c in chosen) >= limit:
                held = f"array limit: at most {limit} of array {job.array_id}'s tasks run at a time"
                job.placement, job.reason = placement_record(now, waiting=held), held
                chosen.append(None)
                continue
            site = place(session, job, request, now, sites, (queues, promised))
            if site is None and not _may_wait(job):
                raise _no_candidate(job)  # the request's transaction rolls back: nothing is stored
            chosen.append(site)
            if site is not None and len(jobs) > 1:
                sites = _taken(sites, site, job)
    _store(session, jobs, chosen, now)
    names = Names(
        factories={c.factory_id: c.factory_name for c in sites},
        partitions={c.partition_id: c.partition_name for c in sites},
        users={who.user_id: who.username},
    )
    return Submitted(jobs[0], names)


def _store(
    session: Session, jobs: list[Job], chosen: list[Candidate | None], now: datetime
) -> None:
    """Insert the decided jobs, then their reservations and transitions; wake who acts next."""
    session.add_all([job for job in jobs if job.id is None])
    session.flush()
    topics = set()
    for job, site in zip(jobs, chosen, strict=True):
        _record(session, job, "", JobState.PENDING, "submitted", now)
        if site is None:
            topics.add(BROKER)
            continue
        if job.reserved_milli:  # under the lock place() took: cannot be refused now
            effect = (job.id, job.attempt)
            ledger.reserve(session, site.allocation_id, job.reserved_milli, "broker", effect)
        _record(session, job, JobState.PENDING, JobState.PLACED, job.reason or "", now)
        topics.add(site_topic(site.factory_id))
    for topic in sorted(topics):
        wake(session, topic)


_PROJECT = select(Project.code).where(Project.code == bindparam("code"))
_MEMBER = select(ProjectMember.project_code).where(
    ProjectMember.project_code == bindparam("code"), ProjectMember.user_id == bindparam("user")
)
_QUEUES = select(SiteQueue).where(SiteQueue.pool.in_(bindparam("pools", expanding=True)))


def _check_project(session: Session, who: Principal, spec: JobSpec) -> None:
    query = _PROJECT if who.is_admin else _MEMBER
    if session.scalar(query, {"code": spec.project, "user": who.user_id}) is None:
        # one answer for both: whether a project exists is not told to non-members
        msg = f"{spec.project!r} is not a project you are a member of"
        raise Invalid.field("project", "your_project", msg)
    if spec.allowed_countries:
        known = set(session.scalars(select(Country.code)))
        unknown = sorted(set(spec.allowed_countries) - known)
        if unknown:
            msg = f"unknown country codes {unknown}"
            raise Invalid.field("allowed_countries", "known_country", msg)


def _new_jobs(session: Session, who: Principal, spec: JobSpec, now: datetime) -> list[Job]:
    """The job, or the array's tasks (the first task's id is the array's), pending; only an
    array's first task is stored yet."""
    indices, _ = spec.tasks()
    stored = spec.model_dump(mode="json")

    def new(task: int | None, array_id: int | None = None) -> Job:
        return Job(
            name=spec.name,
            project_code=spec.project,
            owner_id=who.user_id,
            spec=stored,
            state=JobState.PENDING,
            gpus=spec.resources.gpus,
            time_limit_s=spec.resources.time_limit,
            created_at=now,
            updated_at=now,
            array_id=array_id,
            array_task=task,
        )

    first = new(indices[0] if indices else None)
    if not indices:
        return [first]  # stored by _store once placed (or not)
    session.add(first)
    session.flush()  # the first task's id is the array's
    first.array_id = first.id
    return [first, *(new(i, first.id) for i in indices[1:])]


class _Queues:
    """The broker's reservations (``site_queues``) of the pools a submission looks at, each
    read once per submission."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[str, SiteQueue | None] = {}

    def of(self, pools: Sequence[str]) -> dict[str, SiteQueue]:
        unread = sorted(set(pools) - set(self.known))
        if unread:
            self.known.update(dict.fromkeys(unread))
            rows = self.session.scalars(_QUEUES, {"pools": unread})
            self.known.update({q.pool: q for q in rows})
        return {p: q for p in pools if (q := self.known[p]) is not None}


def _taken(sites: list[Candidate], chosen: Candidate, job: Job) -> list[Candidate]:
    """The sites as the next task of the same submission sees them: the chosen pool's GPUs
    and the chosen allocation's budget less what ``job`` took."""
    out = []
    for c in sites:
        view = c.view
        if c.pool == chosen.pool:
            view = replace(view, free_gpus=max(view.free_gpus - job.gpus, 0))
        if c.allocation_id == chosen.allocation_id:
            left = (view.budget_remaining_gpu_hours or 0) - job.reserved_milli / 1000
            view = replace(view, budget_remaining_gpu_hours=left)
        out.append(c if view is c.view else replace(c, view=view))
    return out


def place(
    session: Session,
    job: Job,
    request: JobRequest,
    now: datetime,
    candidates: list[Candidate],
    reads: tuple[_Queues, dict[int, int]],
) -> Candidate | None:
    """Place a new submission at once if it fits free GPUs without delaying anyone's turn.

    ``reads``: the sites' reservations, and the hours this submission's earlier jobs are to
    reserve per allocation. On success the budget is checked under the allocation's lock (the
    caller reserves it), the job is placed and its site returned. Otherwise
    ``job.placement["waiting"]`` says why it may still run later (a site busy or down, a job
    next in line there, the project's budget held by its running jobs) and the broker takes it
    from there; when it is empty the job can never run as asked.
    """
    policy = get_placement_policy(POLICY)
    decision = policy.place(request, tuple(c.view for c in candidates), now.timestamp())
    by_name = {c.view.name: c for c in candidates}
    queues, promised = reads
    ready, behind = _ready(queues, request, decision.ranked, by_name, now)
    rejected = dict(decision.rejected)
    if not candidates:
        rejected["(none)"] = f"project {job.project_code} has no active allocation"
    for name in ready:
        site = by_name[name]
        amount = charge_milli(job.gpus * job.time_limit_s, _decimal(site.charge_factor))
        aid = site.allocation_id
        short = ledger.check_reserve(session, aid, amount, promised.get(aid, 0))
        if short is None:
            promised[aid] = promised.get(aid, 0) + amount
            _assign(job, site, amount, now)
            job.placement = placement_record(now, decision.ranked, rejected, chosen=name)
            return site
        rejected[name] = short  # concurrent submissions took the budget this read still saw
    if decision.ranked and not ready:
        head = next((behind[n].job_id for n in decision.ranked if n in behind), None)
        waiting: str | None = gpu_wait(request.gpus, decision.ranked, head)
    else:  # none fits now, or the budget went: may it still run later?
        waiting = waits_for(policy, request, candidates, rejected, now)
    job.placement = placement_record(now, decision.ranked, rejected, waiting=waiting)
    job.reason = waiting or "no site can run this job: " + "; ".join(
        f"{k}: {v}" for k, v in rejected.items()
    )
    return None


def _assign(job: Job, site: Candidate, amount: int, now: datetime) -> None:
    check_move(JobState(job.state), JobState.PLACED)
    job.allocation_id, job.partition_id, job.factory_id = (
        site.allocation_id,
        site.partition_id,
        site.factory_id,
    )
    job.reserved_milli = amount
    job.state, job.updated_at, job.reason = JobState.PLACED, now, f"placed on {site.view.name}"


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


def gpu_wait(gpus: int, sites: Sequence[str], head: int | None = None) -> str:
    """Why a job waits for GPUs, in words that stay the same while it waits (no live counts:
    ``jobs why`` adds those), so a busy federation does not rewrite every waiting job."""
    where = ", ".join(sites)
    behind = f", behind job {head}, next in line there" if head is not None else ""
    return f"waiting for {gpus} GPUs at {where}{behind}"


def _ready(
    queues: _Queues,
    request: JobRequest,
    ranked: Sequence[str],
    by_name: Mapping[str, Candidate],
    now: datetime,
) -> tuple[list[str], dict[str, SiteQueue]]:
    """The ranked sites with the GPUs free whose next-in-line job this one cannot delay, and
    the reservations of the sites that have one."""
    fits = [n for n in ranked if by_name[n].view.free_gpus >= request.gpus]
    queued = queues.of([by_name[n].pool for n in fits])
    behind = {n: queued[by_name[n].pool] for n in fits if by_name[n].pool in queued}
    start, length = now.timestamp(), request.time_limit_s
    ready = [
        n
        for n in fits
        if n not in behind
        or backfill.allows(_reservation(behind[n]), start, length, request.gpus) is not None
    ]
    return ready, behind


def _reservation(queue: SiteQueue) -> backfill.Reservation:
    # A submission backfills only when it ends first: the spare GPUs are the broker's to give.
    return backfill.Reservation(queue.start_at.timestamp(), 0)


def waits_for(
    policy: PlacementPolicy,
    request: JobRequest,
    candidates: list[Candidate],
    rejected: Mapping[str, str],
    now: datetime,
) -> str | None:
    """Why a job no site takes now could still run later, or None when it never can.

    It can when a site would fit once its scheduler answers again, or once the budget that the
    project's own placed and running jobs hold comes back to the allocation.
    """
    hopeful = [
        replace(
            c.view,
            operational=c.view.operational or c.site_down,
            budget_remaining_gpu_hours=(c.view.budget_remaining_gpu_hours or 0) + c.held_gpu_hours,
        )
        for c in candidates
    ]
    later = policy.place(request, tuple(hopeful), now.timestamp()).ranked
    if not later:
        return None
    by_name = {c.view.name: c for c in candidates}
    reasons = [
        f"{name}: its scheduler does not answer now"
        if by_name[name].site_down
        else f"{name}: {rejected.get(name, 'busy')}, until the project's running jobs end"
        for name in later
    ]
    return "waiting for " + "; ".join(reasons)


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
    amount = charge_milli(job.gpus * job.time_limit_s, _decimal(site.charge_factor))
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


def _may_wait(job: Job) -> bool:
    """A job waits when some site fits but is busy or down now; otherwise it is refused."""
    return bool((job.placement or {}).get("waiting"))


def _no_candidate(job: Job) -> Conflict:
    rejected: dict[str, str] = (job.placement or {}).get("rejected", {})
    details = [FieldError(site, "placement", why) for site, why in rejected.items()]
    return Conflict(f"no factory can run job {job.name!r}: {job.reason}", details)


def _record(session: Session, job: Job, old: str, new: str, reason: str, at: datetime) -> None:
    session.add(JobTransition(job_id=job.id, at=at, from_state=old, to_state=new, reason=reason))


def _decimal(value: float) -> Decimal:
    return Decimal(str(value))
