"""System status for staff: are the controllers alive, who holds each site, what waits."""

from __future__ import annotations

from fastapi import APIRouter

from aifactory.api.deps import CurrentPrincipal, NowDep, SessionDep, SettingsDep
from aifactory.api.errors import ERROR_RESPONSES
from aifactory.services.health import SystemHealth, system_health

router = APIRouter(tags=["meta"], responses=ERROR_RESPONSES)


@router.get("/status")
def status(
    session: SessionDep, who: CurrentPrincipal, now: NowDep, settings: SettingsDep
) -> SystemHealth:
    """Controllers, site leases and last contact, and the oldest job waiting for hand-over."""
    return system_health(session, who, now, settings.lease_ttl_s)
