"""Projects, allocations, their ledgers, expiry and usage reports."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import Response

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import DateQuery, IdPath
from aifactory.domain.clock import as_date
from aifactory.errors import Forbidden
from aifactory.services import ledger, projects, reports
from aifactory.services.access_views import AllocationView, LedgerEntryView, ProjectView, Report
from aifactory.services.permissions import Action, authorize

router = APIRouter(tags=["projects"], responses=ERROR_RESPONSES)
#: factory / factory-country: where the GPU-hours were used; user-country: the project's
#: organisation's country; funding: EU Digital Europe, national, commercial (services/reports.py).
GroupBy = Literal["project", "factory", "factory-country", "user-country", "funding", "mode"]


@router.get("/projects")
def list_projects(session: SessionDep, who: CurrentPrincipal) -> list[ProjectView]:
    authorize(who, Action.READ_SELF)
    return projects.list_projects(session, who)


@router.get("/projects/{code}")
def get_project(code: str, session: SessionDep, who: CurrentPrincipal) -> ProjectView:
    return projects.get_project(session, who, code)


# ``:int`` so that /allocations/expire is never read as an id (a GET there is 405, not 422).
@router.get("/allocations/{allocation_id:int}")
def get_allocation(
    allocation_id: IdPath, session: SessionDep, who: CurrentPrincipal
) -> AllocationView:
    return projects.get_allocation(session, who, allocation_id)


@router.get("/allocations/{allocation_id:int}/ledger")
def get_ledger(
    allocation_id: IdPath, session: SessionDep, who: CurrentPrincipal
) -> list[LedgerEntryView]:
    return projects.get_ledger(session, who, allocation_id)


@router.post("/allocations/expire")
def expire_allocations(session: SessionDep, who: CurrentPrincipal, now: NowDep) -> list[int]:
    """Expire every allocation past its end date (run daily by operators or a timer)."""
    if not who.is_admin:
        raise Forbidden("only federation admins expire allocations")
    return ledger.expire_due(session, as_date(now), who.username)


@router.get("/reports/usage")
def usage_report(
    session: SessionDep,
    who: CurrentPrincipal,
    group_by: GroupBy = "factory",
    start: DateQuery = None,
    end: DateQuery = None,
) -> Report:
    authorize(who, Action.READ_SELF)
    return reports.usage_report(session, who, group_by, start, end)


@router.get(
    "/reports/usage.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def usage_report_csv(
    session: SessionDep,
    who: CurrentPrincipal,
    group_by: GroupBy = "factory",
    start: DateQuery = None,
    end: DateQuery = None,
) -> Response:
    authorize(who, Action.READ_SELF)
    report = reports.usage_report(session, who, group_by, start, end)
    return Response(
        reports.to_csv(report),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="usage-by-{group_by}.csv"'},
    )
