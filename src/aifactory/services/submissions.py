"""Submissions: store a job, or an array's tasks, in one transaction, placed at once where it
fits free GPUs without delaying anyone's turn (otherwise the broker takes it from there).

This is the API's hot path, so it is written for speed without changing what it decides:

* it reads and writes with SQLAlchemy Core statements built once (the ORM's unit of work cost
  more than the database did), and keeps the jobs as plain ``Job`` objects until they are
  inserted, once each, in their final state (an array in one multi-row INSERT);
* where each job goes is decided first, its budget checked under the allocation's row lock
  (``ledger.hold``), then the jobs, their reservations and transitions are written;
* the sites are read once per submission, and an array's tasks share that view.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from aifactory.broker import backfill
from aifactory.broker.admission import gpu_wait
from aifactory.broker.placement import JobRequest, get_placement_policy
from aifactory.db.engine import begin_write
from aifactory.db.models import Country, Job, JobTransition, Project, ProjectMember, SiteQueue
from aifactory.db.wake import BROKER, site_topic, wake
from aifactory.domain.jobs import JobState, check_move
from aifactory.domain.jobspec import JobSpec
from aifactory.errors import Conflict, FieldError, Invalid
from aifactory.services import ledger
from aifactory.services.candidates import Candidate, job_request, site_candidates
from aifactory.services.job_queries import Names
from aifactory.services.jobs import (
    POLICY,
    placement_record,
    reservation_milli,
    waits_for,
)
from aifactory.services.permissions import Principal

_J, _T = cast(Table, Job.__table__), cast(Table, JobTransition.__table__)
_Q = cast(Table, SiteQueue.__table__)
_COLUMNS = [c.key for c in _J.columns if c.key != "id"]
_INSERT_JOBS = insert(_J).returning(_J.c.id, sort_by_parameter_order=True)
#: What deciding a job sets: written once for an array's first task, stored before the others.
_DECIDED = (
    "state",
    "allocation_id",
    "factory_id",
    "partition_id",
    "reserved_milli",
    "placement",
    "reason",
    "array_id",
    "updated_at",
)
_DECIDE_FIRST = (
    update(_J)
    .where(_J.c.id == bindparam("jid"))
    .values({c: bindparam(f"v_{c}") for c in _DECIDED})
    .values(version=_J.c.version + 1)
)
_PROJECT = select(Project.code).where(Project.code == bindparam("code"))
_MEMBER = select(ProjectMember.project_code).where(
    ProjectMember.project_code == bindparam("code"), ProjectMember.user_id == bindparam("user")
)
_QUEUES = select(_Q.c.pool, _Q.c.job_id, _Q.c.start_at).where(
    _Q.c.pool.in_(bindparam("pools", expanding=True))
)


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
    could ever run it (then nothing is stored)."""
    _check_project(session, who, spec)
    begin_write(session)  # SQLite: one writer from here, so the free GPUs read stay free
    jobs = _new_jobs(session, who, spec, now)
    sites = site_candidates(session, spec.project, now, capacity)
    request, queues, promised = job_request(spec), _Queues(session), dict[int, int]()
    _, limit = spec.tasks()
    chosen: list[Candidate | None] = []
    placed = 0
    for job in jobs:
        if limit is not None and placed >= limit:
            held = f"array limit: at most {limit} of array {job.array_id}'s tasks run at a time"
            job.placement, job.reason = placement_record(now, waiting=held), held
            chosen.append(None)
            continue
        site = place(session, job, request, now, sites, (queues, promised))
        if site is None and not _may_wait(job):
            raise _no_candidate(job)  # the request's transaction rolls back: nothing is stored
        chosen.append(site)
        if site is not None:
            placed += 1
            sites = _taken(sites, site, job) if len(jobs) > 1 else sites
    _store(session, jobs, chosen, now)
    names = Names(
        factories={c.factory_id: c.factory_name for c in sites},
        partitions={c.partition_id: c.partition_name for c in sites},
        users={who.user_id: who.username},
    )
    return Submitted(jobs[0], names)


def check_member(session: Session, who: Principal, project: str) -> None:
    """The caller may start work in ``project``: a member (or a federation admin).

    Raises:
        Invalid: Not so; the same answer whether or not the project exists.
    """
    query = _PROJECT if who.is_admin else _MEMBER
    found = session.connection().execute(query, {"code": project, "user": who.user_id})
    if found.first() is None:
        # one answer for both: whether a project exists is not told to non-members
        msg = f"{project!r} is not a project you are a member of"
        raise Invalid.field("project", "your_project", msg)


def _check_project(session: Session, who: Principal, spec: JobSpec) -> None:
    check_member(session, who, spec.project)
    if spec.allowed_countries:
        known = set(session.scalars(select(Country.code)))
        unknown = sorted(set(spec.allowed_countries) - known)
        if unknown:
            msg = f"unknown country codes {unknown}"
            raise Invalid.field("allowed_countries", "known_country", msg)


def _new_jobs(session: Session, who: Principal, spec: JobSpec, now: datetime) -> list[Job]:
    """The job, or the array's tasks, pending and not stored, except an array's first task,
    stored at once: its id is the array's."""
    indices, _ = spec.tasks()
    stored = spec.model_dump(mode="json")

    def new(task: int | None) -> Job:
        return Job(
            uid=uuid.uuid4().hex[:16],
            name=spec.name,
            project_code=spec.project,
            owner_id=who.user_id,
            spec=stored,
            state=JobState.PENDING,
            version=1,
            attempt=1,
            gpus=spec.resources.gpus,
            time_limit_s=spec.resources.time_limit,
            **dict.fromkeys(("allocation_id", "factory_id", "partition_id", "backend_id")),
            **dict.fromkeys(("exit_code", "placement", "started_at", "ended_at", "lost_since")),
            reserved_milli=0,
            charged_milli=0,
            reason="",
            cancel_requested=False,
            created_at=now,
            updated_at=now,
            array_id=None,
            array_task=task,
        )

    jobs = [new(i) for i in indices] if indices else [new(None)]
    if indices:
        _insert(session, jobs[:1])
        for job in jobs:
            job.array_id = jobs[0].id
    return jobs


def _insert(session: Session, jobs: Sequence[Job]) -> None:
    rows = [{c: getattr(job, c) for c in _COLUMNS} for job in jobs]
    ids = session.connection().execute(_INSERT_JOBS, rows).scalars().all()
    for job, job_id in zip(jobs, ids, strict=True):
        job.id = job_id


def _store(
    session: Session, jobs: list[Job], chosen: list[Candidate | None], now: datetime
) -> None:
    """Insert the decided jobs, then their reservations and transitions; wake who acts next."""
    conn = session.connection()
    _insert(session, [job for job in jobs if job.id is None])
    if jobs[0].array_id is not None:  # an array's first task, stored before it was decided
        first = jobs[0]
        conn.execute(
            _DECIDE_FIRST, {"jid": first.id, **{f"v_{c}": getattr(first, c) for c in _DECIDED}}
        )
    topics, moves, amounts = set(), [], dict[int, list[tuple[int, ledger.JobAttempt]]]()
    for job, site in zip(jobs, chosen, strict=True):
        moves.append(_move(job.id, "", JobState.PENDING, "submitted", now))
        if site is None:
            topics.add(BROKER)
            continue
        if job.reserved_milli:
            amounts.setdefault(site.allocation_id, []).append((job.reserved_milli, (job.id, 1)))
        moves.append(_move(job.id, JobState.PENDING, JobState.PLACED, job.reason, now))
        topics.add(site_topic(site.factory_id))
    for allocation_id, due in amounts.items():  # checked under the lock place() took
        ledger.reserve_held(session, ledger.hold(session, allocation_id), due, "broker")
    conn.execute(insert(_T), moves)
    for topic in sorted(topics):
        wake(session, topic)


def _move(job_id: int, old: str, new: str, reason: str, at: datetime) -> dict[str, Any]:
    return {"job_id": job_id, "at": at, "from_state": old, "to_state": new, "reason": reason}


class _Queues:
    """The broker's reservations (``site_queues``) of the pools a submission looks at, each
    read once per submission: pool -> (next-in-line job, its start)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.known: dict[str, tuple[int, datetime] | None] = {}

    def of(self, pools: Sequence[str]) -> dict[str, tuple[int, datetime]]:
        unread = sorted(set(pools) - set(self.known))
        if unread:
            self.known.update(dict.fromkeys(unread))
            rows = self.session.connection().execute(_QUEUES, {"pools": unread})
            self.known.update({pool: (job_id, start) for pool, job_id, start in rows})
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
        amount = reservation_milli(job, site)
        aid = site.allocation_id
        short = ledger.shortfall(ledger.hold(session, aid), amount, promised.get(aid, 0))
        if short is None:
            promised[aid] = promised.get(aid, 0) + amount
            _assign(job, site, amount, now)
            job.placement = placement_record(now, decision.ranked, rejected, chosen=name)
            return site
        rejected[name] = short  # concurrent submissions took the budget this read still saw
    if decision.ranked and not ready:
        head = next((behind[n][0] for n in decision.ranked if n in behind), None)
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


def _ready(
    queues: _Queues,
    request: JobRequest,
    ranked: Sequence[str],
    by_name: Mapping[str, Candidate],
    now: datetime,
) -> tuple[list[str], dict[str, tuple[int, datetime]]]:
    """The ranked sites with the GPUs free whose next-in-line job this one cannot delay, and
    the reservations (next job, its start) of the sites that have one."""
    fits = [n for n in ranked if by_name[n].view.free_gpus >= request.gpus]
    queued = queues.of([by_name[n].pool for n in fits])
    behind = {n: queued[by_name[n].pool] for n in fits if by_name[n].pool in queued}
    start, length = now.timestamp(), request.time_limit_s
    ready = [
        n
        for n in fits
        if n not in behind
        # A submission backfills only when it ends first: the spare GPUs are the broker's.
        or backfill.allows(backfill.Reservation(behind[n][1].timestamp(), 0), start, length,
                           request.gpus) is not None
    ]  # fmt: skip
    return ready, behind


def _may_wait(job: Job) -> bool:
    """A job waits when some site fits but is busy or down now; otherwise it is refused."""
    return bool((job.placement or {}).get("waiting"))


def _no_candidate(job: Job) -> Conflict:
    rejected: dict[str, str] = (job.placement or {}).get("rejected", {})
    details = [FieldError(site, "placement", why) for site, why in rejected.items()]
    return Conflict(f"no factory can run job {job.name!r}: {job.reason}", details)
