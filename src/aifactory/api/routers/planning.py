"""Capacity planning: the registry snapshot ``aif plan`` starts from, and the job history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.api.params import DateQuery
from aifactory.services import planning
from aifactory.services.permissions import Action, authorize

router = APIRouter(tags=["planning"], responses=ERROR_RESPONSES)


@router.get("/planning/snapshot")
def planning_snapshot(
    session: SessionDep, who: CurrentPrincipal, now: NowDep
) -> planning.PlanningSnapshot:
    """Factories, funding shares, systems and partitions, as ``aif plan`` reads them."""
    authorize(who, Action.READ_REGISTRY)
    return planning.snapshot(session, now)


@router.get("/planning/history")
def planning_history(
    session: SessionDep,
    who: CurrentPrincipal,
    since: DateQuery = None,
    limit: Annotated[int, Query(ge=1, le=planning.HISTORY_LIMIT)] = planning.HISTORY_LIMIT,
) -> planning.JobHistory:
    """Jobs that ran (submit, start, end, GPUs, partition, project): staff only."""
    authorize(who, Action.READ_SELF)  # the service checks for admins and factory operators
    return planning.history(session, who, since, limit)
