"""Reading jobs: show, list (keyset pages), why (placement reasons), logs, and cancel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Factory,
    Job,
    JobTransition,
    Partition,
    ProjectMember,
    SiteQueue,
    System,
    User,
)
from aifactory.db.types import utcnow
from aifactory.db.wake import BROKER, site_topic, wake
from aifactory.domain.enums import Role
from aifactory.domain.jobs import TERMINAL, JobState
from aifactory.domain.ledger import from_milli
from aifactory.domain.serving import service_url
from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.services import candidates, placement_views
from aifactory.services.job_views import (
    JobAttemptView,
    JobPage,
    JobTransitionView,
    JobView,
    LogChunk,
    PlacementView,
)
from aifactory.services.permissions import Principal

MAX_LOG_CHUNK = 256 * 1024
#: Environment variables views never show: a service's bearer token (what the gateway or a
#: session's proxy sends the job's server), given to the job alone, not to its project's members.
SECRET_ENV = frozenset({"AIF_SERVICE_TOKEN"})
#: How much of a service job's log is searched for the address it announced.
ANNOUNCE_HEAD = 64 * 1024


def get(session: Session, who: Principal, job_id: int, detail: bool = True) -> JobView:
    return view(session, _visible(session, who, job_id), detail)


def list_jobs(
    session: Session,
    who: Principal,
    project: str | None = None,
    state: JobState | None = None,
    limit: int = 50,
    before: int | None = None,
    array: int | None = None,
) -> JobPage:
    """Newest first, ``limit`` at a time; pass ``next_before`` back for the next page."""
    query = select(Job)
    if not who.is_admin:
        mine = list(
            session.scalars(
                select(ProjectMember.project_code).where(ProjectMember.user_id == who.user_id)
            )
        )
        factories = [f for r, f in who.roles if r == Role.FACTORY_OPERATOR and f is not None]
        # A literal list and no empty OR branch let the database use (project_code, id).
        mine_only = Job.project_code.in_(mine)
        query = query.where(mine_only | Job.factory_id.in_(factories) if factories else mine_only)
    if project:
        query = query.where(Job.project_code == project)
    if state:
        query = query.where(Job.state == state)
    if before:
        query = query.where(Job.id < before)
    if array is not None:
        query = query.where(Job.array_id == array)
    rows = list(session.scalars(query.order_by(Job.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    page = rows[:limit]
    names = _names(session, page)
    return JobPage(
        jobs=[view(session, j, detail=False, names=names) for j in page],
        next_before=page[-1].id if more and page else None,
    )


def why(
    session: Session,
    who: Principal,
    job_id: int,
    capacity: Mapping[str, int | None] | None = None,
) -> PlacementView:
    """The broker's decision; for a waiting job with the figures of now (free GPUs per site,
    and the start it is promised where it is next in line)."""
    job = _visible(session, who, job_id)
    p = job.placement or {}
    waiting, starts = p.get("waiting"), dict(p.get("est_start_s", {}))
    if job.state == JobState.PENDING and waiting:
        now = utcnow()
        sites = {
            c.view.name: c
            for c in candidates.site_candidates(session, job.project_code, now, capacity or {})
        }
        live = [sites[n] for n in p.get("ranked", []) if n in sites]
        if live:
            waiting += "; now: " + "; ".join(
                f"{c.view.name} has {c.view.free_gpus} of {c.view.total_gpus} GPUs free"
                for c in live
            )
        held = {
            q.pool: q for q in session.scalars(select(SiteQueue).where(SiteQueue.job_id == job.id))
        }
        starts = {
            c.view.name: round(max((held[c.pool].start_at - now).total_seconds(), 0.0), 1)
            for c in live
            if c.pool in held
        }
    listed = (
        []
        if job.state in TERMINAL
        else placement_views.live_candidates(session, job, capacity or {}, utcnow())
    )
    # Every site that can run it gets its estimate (a full one never "now"), where it waits.
    if job.state == JobState.PENDING:
        starts |= {v.site: v.est_start_s for v in listed if v.est_start_s is not None}
    return PlacementView(
        job_id=job.id,
        state=job.state,
        policy=str(p.get("policy", "broker")),
        decided_at=datetime.fromisoformat(p["at"]) if p.get("at") else None,
        chosen=p.get("chosen"),
        ranked=list(p.get("ranked", [])),
        est_start_s=starts,
        rejected=dict(p.get("rejected", {})),
        waiting=waiting,
        candidates=listed,
    )


def cancel(session: Session, who: Principal, job_id: int, whole_array: bool = False) -> JobView:
    """Ask for cancellation; the site agent stops it (its whole process group) shortly.

    With ``whole_array`` every unfinished task of the job's array is cancelled (``scancel`` of
    an array job id).
    """
    job = _visible(session, who, job_id)
    if whole_array and job.array_id is None:
        raise Invalid.field("array", "is_array", f"job {job_id} is not part of a job array")
    which = Job.array_id == job.array_id if whole_array else Job.id == job_id
    # A flag, not a transition: set without taking the job's version, so it never makes a
    # controller's concurrent compare-and-set fail; the site agent acts on it in its next pass.
    flagged = session.execute(
        update(Job)
        .where(which, Job.state.not_in(list(TERMINAL)))
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    if not flagged.rowcount:  # type: ignore[attr-defined]
        session.refresh(job)
        raise Conflict(f"job {job_id} is already {job.state}")
    session.refresh(job)
    if whole_array:  # its pending tasks wait on the broker, the others on their sites' agents
        sites = set(session.scalars(select(Job.factory_id).where(which)))
        topics = [BROKER, *(site_topic(f) for f in sorted(f for f in sites if f))]
    else:
        topics = [site_topic(job.factory_id) if job.factory_id else BROKER]
    for topic in topics:
        wake(session, topic)
    return view(session, job, True)


def logs(
    session: Session,
    who: Principal,
    job_id: int,
    stream: str = "stdout",
    offset: int = 0,
    attempt: int | None = None,
) -> LogChunk:
    """A chunk of the job's log from ``offset``; follow by calling again with ``next_offset``."""
    job = _visible(session, who, job_id)
    if stream not in ("stdout", "stderr"):
        raise Invalid.field("stream", "one_of", "stream is stdout or stderr")
    number = attempt or job.attempt
    row = next((a for a in job.attempts if a.attempt == number), None)
    where = (row.stdout_path if stream == "stdout" else row.stderr_path) if row else None
    path = Path(where) if where else None
    text, next_offset = "", offset
    if path is not None and path.exists():
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(MAX_LOG_CHUNK)
        text, next_offset = data.decode("utf-8", errors="replace"), offset + len(data)
    size = path.stat().st_size if path is not None and path.exists() else 0
    finished = job.state in TERMINAL and next_offset >= size
    return LogChunk(
        job_id=job.id,
        stream=stream,
        offset=offset,
        next_offset=next_offset,
        text=text,
        finished=finished,
    )


@dataclass(frozen=True)
class Names:
    """Names a page of jobs refers to, fetched in three small queries instead of per row."""

    factories: dict[int, str]
    partitions: dict[int, str]
    users: dict[int, str]


def _names(session: Session, jobs: list[Job]) -> Names:
    partitions = session.execute(
        select(Partition.id, System.name, Partition.name).join(
            System, System.id == Partition.system_id
        )
    )
    owners = {j.owner_id for j in jobs}
    return Names(
        factories={fid: name for fid, name in session.execute(select(Factory.id, Factory.name))},
        partitions={pid: f"{system}/{name}" for pid, system, name in partitions},
        users={
            uid: name
            for uid, name in session.execute(
                select(User.id, User.username).where(User.id.in_(owners))
            )
        },
    )


def view(session: Session, job: Job, detail: bool = True, names: Names | None = None) -> JobView:
    names = names or _names(session, [job])
    out = JobView(
        id=job.id,
        name=job.name,
        project=job.project_code,
        owner=names.users.get(job.owner_id, "?"),
        state=job.state,
        attempt=job.attempt,
        gpus=job.gpus,
        time_limit_s=job.time_limit_s,
        factory=names.factories.get(job.factory_id) if job.factory_id else None,
        partition=names.partitions.get(job.partition_id) if job.partition_id else None,
        reserved_gpu_hours=from_milli(job.reserved_milli),
        charged_gpu_hours=from_milli(job.charged_milli),
        exit_code=job.exit_code,
        reason=job.reason,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        array_id=job.array_id,
        array_task=job.array_task,
    )
    if not detail:
        return out
    out.spec = _redacted(job.spec)
    out.attempts = [
        JobAttemptView(
            attempt=a.attempt,
            factory=names.factories.get(a.factory_id, "?"),
            backend_id=a.backend_id,
            state=a.state,
            exit_code=a.exit_code,
            started_at=a.started_at,
            ended_at=a.ended_at,
            elapsed_s=a.elapsed_s,
            charged_gpu_hours=from_milli(a.charged_milli),
            message=a.message,
        )
        for a in job.attempts
    ]
    out.transitions = [
        JobTransitionView(at=t.at, from_state=t.from_state, to_state=t.to_state, reason=t.reason)
        for t in session.scalars(
            select(JobTransition).where(JobTransition.job_id == job.id).order_by(JobTransition.id)
        )
    ]
    return out


def flag_cancel(session: Session, job: Job) -> None:
    """Flag the job for cancellation (as ``aif jobs cancel`` does, without its permission
    check) and wake whoever acts on it: its site's agent, or the broker while it is pending."""
    if job.state in TERMINAL or job.cancel_requested:
        return
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.state.not_in(list(TERMINAL)))
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    wake(session, site_topic(job.factory_id) if job.factory_id else BROKER)


def announced_url(job: Job) -> str | None:
    """The address a service job printed (``AIF_SERVICE_URL=``), read from the head of its
    current attempt's log; None until it has."""
    attempt = next((a for a in job.attempts if a.attempt == job.attempt), None)
    if attempt is None or not attempt.stdout_path:
        return None
    try:
        with Path(attempt.stdout_path).open("rb") as fh:
            head = fh.read(ANNOUNCE_HEAD).decode("utf-8", errors="replace")
    except OSError:
        return None
    return service_url(head)


def _redacted(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as views show it: without the secrets only the job itself may hold."""
    env = spec.get("environment")
    if not isinstance(env, dict) or not SECRET_ENV & env.keys():
        return spec
    hidden = {k: "(hidden)" if k in SECRET_ENV else v for k, v in env.items()}
    return {**spec, "environment": hidden}


def _visible(session: Session, who: Principal, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if who.is_admin or (job.factory_id and who.has(Role.FACTORY_OPERATOR, job.factory_id)):
        return job
    member = session.scalar(
        select(ProjectMember.user_id).where(
            ProjectMember.project_code == job.project_code, ProjectMember.user_id == who.user_id
        )
    )
    if member is None:  # the same answer as for an unknown id: nothing about the job leaks
        raise NotFound(f"job {job_id} not found")
    return job


def visible_job(session: Session, who: Principal, job_id: int) -> Job:
    """The job when ``who`` may read it (its logs, its metrics); otherwise ``NotFound``."""
    return _visible(session, who, job_id)
