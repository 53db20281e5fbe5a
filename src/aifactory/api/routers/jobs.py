"""Jobs: submit once, then follow state, placement reasons and logs; cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep, site_capacity
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import job_queries, jobs
from aifactory.services.job_views import JobPage, JobView, LogChunk, PlacementView

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("/jobs", status_code=201)
def submit_job(
    body: JobSpec, request: Request, session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> JobView:
    """Submit a job; 201 with state placed or pending, 409 when no factory could ever run it."""
    job = jobs.submit(session, who, body, now, site_capacity(request, session))
    return job_queries.view(session, job, detail=False)


@router.get("/jobs")
def list_jobs(
    session: SessionDep,
    who: CurrentPrincipal,
    project: Annotated[str | None, Query(max_length=32)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> JobPage:
    return job_queries.list_jobs(session, who, project, state, limit, before)


@router.get("/jobs/{job_id}")
def get_job(job_id: int, session: SessionDep, who: CurrentPrincipal) -> JobView:
    return job_queries.get(session, who, job_id)


@router.get("/jobs/{job_id}/why")
def why_job(job_id: int, session: SessionDep, who: CurrentPrincipal) -> PlacementView:
    return job_queries.why(session, who, job_id)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: int, session: SessionDep, who: CurrentPrincipal) -> JobView:
    return job_queries.cancel(session, who, job_id)


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: int,
    session: SessionDep,
    who: CurrentPrincipal,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
    attempt: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> LogChunk:
    return job_queries.logs(session, who, job_id, stream, offset, attempt)
