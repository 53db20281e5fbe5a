"""Jobs: submit once, then follow state, placement reasons and logs; cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from aifactory.api.deps import (
    REPLAYED,
    CurrentPrincipal,
    IdempotencyKeyDep,
    NowDep,
    SessionDep,
    get_db,
    site_capacity,
)
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import IdPath, IdQuery
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services import idempotency, job_metrics, job_queries, submissions
from aifactory.services.job_metrics_views import JobMetrics
from aifactory.services.job_views import JobPage, JobView, LogChunk, PlacementView

router = APIRouter(tags=["jobs"], responses=ERROR_RESPONSES)


@router.post("/jobs", status_code=201, responses=REPLAYED, response_model=JobView)
def submit_job(
    body: JobSpec,
    request: Request,
    who: CurrentPrincipal,
    now: NowDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> Response:
    """Submit a job; 201 with state placed or pending, 409 when no factory could ever run it.

    With an `Idempotency-Key` already used for this request, 201 with the original job.
    """
    # The hot path: its transaction lives in this one worker-thread call (a session
    # dependency costs two more hops), committed before the answer is written, and the
    # answer is the view's JSON as is (no second validation against the response model).
    with get_db(request).session() as session:

        def create() -> JobView:
            job, names = submissions.submit(
                session, who, body, now, site_capacity(request, session)
            )
            return job_queries.view(session, job, detail=False, names=names)

        view, replayed = idempotency.once(
            session,
            who.user_id,
            idempotency.JOBS,
            idempotency_key,
            body.model_dump(mode="json") if idempotency_key is not None else None,
            now,
            create,
            lambda job_id: job_queries.get(session, who, job_id, detail=False),
        )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return Response(view.model_dump_json(), 201, headers, "application/json")


@router.get("/jobs")
def list_jobs(
    session: SessionDep,
    who: CurrentPrincipal,
    project: Annotated[str | None, Query(max_length=32)] = None,
    state: JobState | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: IdQuery = None,
    array: IdQuery = None,
) -> JobPage:
    return job_queries.list_jobs(session, who, project, state, limit, before, array)


@router.get("/jobs/{job_id}")
def get_job(job_id: IdPath, session: SessionDep, who: CurrentPrincipal) -> JobView:
    return job_queries.get(session, who, job_id)


@router.get("/jobs/{job_id}/why")
def why_job(
    job_id: IdPath, request: Request, session: SessionDep, who: CurrentPrincipal
) -> PlacementView:
    return job_queries.why(session, who, job_id, site_capacity(request, session))


@router.post("/jobs/{job_id}/cancel")
def cancel_job(
    job_id: IdPath, session: SessionDep, who: CurrentPrincipal, array: bool = False
) -> JobView:
    return job_queries.cancel(session, who, job_id, whole_array=array)


@router.get("/jobs/{job_id}/logs")
def job_logs(
    job_id: IdPath,
    session: SessionDep,
    who: CurrentPrincipal,
    stream: Annotated[str, Query(pattern="^(stdout|stderr)$")] = "stdout",
    offset: Annotated[int, Query(ge=0, le=2**40)] = 0,
    attempt: Annotated[int | None, Query(ge=1, le=100)] = None,
) -> LogChunk:
    return job_queries.logs(session, who, job_id, stream, offset, attempt)


@router.get("/jobs/{job_id}/metrics")
def job_metrics_series(job_id: IdPath, session: SessionDep, who: CurrentPrincipal) -> JobMetrics:
    """The current attempt's ``step=N key=value`` series from its stdout (see docs/workloads.md)."""
    return job_metrics.job_metrics(session, who, job_id)
