"""The health of the running system: controllers, site leases and contact, hand-over backlog."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.db.models import ControllerBeat, Factory, Job, Lease, SiteStatus
from aifactory.db.wake import BROKER, site_topic
from aifactory.domain.enums import Role
from aifactory.domain.jobs import JobState
from aifactory.errors import Forbidden
from aifactory.services.permissions import Principal


class ControllerHealth(BaseModel):
    holder: str
    host: str
    pid: int
    scope: str
    started_at: datetime
    seen_at: datetime
    alive: bool


class SiteHealth(BaseModel):
    factory: str
    lease_holder: str | None
    lease_expires_at: datetime | None
    lease_valid: bool
    available: bool
    reason: str
    last_contact_at: datetime | None


class WaitingJob(BaseModel):
    job_id: int
    factory: str | None
    since: datetime
    waited_s: float


class SystemHealth(BaseModel):
    checked_at: datetime
    controllers_alive: bool
    broker_lease_holder: str | None
    controllers: list[ControllerHealth]
    sites: list[SiteHealth]
    pending_jobs: int
    placed_jobs: int
    oldest_handover: WaitingJob | None


def system_health(session: Session, who: Principal, now: datetime, ttl_s: float) -> SystemHealth:
    """What staff need to see whether the federation runs: for admins and factory operators."""
    if not (who.is_admin or who.has(Role.FACTORY_OPERATOR)):
        raise Forbidden("system status is for federation admins and factory operators")
    stale = now - timedelta(seconds=3 * ttl_s)
    controllers = [
        ControllerHealth(
            holder=b.holder,
            host=b.host,
            pid=b.pid,
            scope=b.scope,
            started_at=b.started_at,
            seen_at=b.seen_at,
            alive=b.seen_at >= stale,
        )
        for b in session.scalars(select(ControllerBeat).order_by(ControllerBeat.started_at))
    ]
    leases = {lease.name: lease for lease in session.scalars(select(Lease))}
    names: dict[int, str] = {i: n for i, n in session.execute(select(Factory.id, Factory.name))}
    counts: dict[str, int] = {
        state: n
        for state, n in session.execute(
            select(Job.state, func.count())
            .where(Job.state.in_([JobState.PENDING, JobState.PLACED]))
            .group_by(Job.state)
        )
    }
    broker = leases.get(BROKER)
    return SystemHealth(
        checked_at=now,
        controllers_alive=any(c.alive for c in controllers),
        broker_lease_holder=broker.holder if broker and broker.expires_at > now else None,
        controllers=controllers,
        sites=_sites(session, names, leases, now),
        pending_jobs=counts.get(JobState.PENDING, 0),
        placed_jobs=counts.get(JobState.PLACED, 0),
        oldest_handover=_oldest_handover(session, names, now),
    )


def _oldest_handover(session: Session, names: dict[int, str], now: datetime) -> WaitingJob | None:
    oldest = session.execute(
        select(Job.id, Job.factory_id, Job.updated_at)
        .where(Job.state == JobState.PLACED)
        .order_by(Job.updated_at)
        .limit(1)
    ).first()
    if oldest is None:
        return None
    return WaitingJob(
        job_id=oldest.id,
        factory=names.get(oldest.factory_id) if oldest.factory_id else None,
        since=oldest.updated_at,
        waited_s=round((now - oldest.updated_at).total_seconds(), 1),
    )


def _sites(
    session: Session, names: dict[int, str], leases: dict[str, Lease], now: datetime
) -> list[SiteHealth]:
    """Each factory's lease holder and whether its scheduler answered, by factory name."""
    status = {row.factory_id: row for row in session.scalars(select(SiteStatus))}
    sites = []
    for fid, name in sorted(names.items(), key=lambda kv: kv[1]):
        lease, row = leases.get(site_topic(fid)), status.get(fid)
        sites.append(
            SiteHealth(
                factory=name,
                lease_holder=lease.holder if lease else None,
                lease_expires_at=lease.expires_at if lease else None,
                lease_valid=bool(lease and lease.expires_at > now),
                available=row.available if row else True,
                reason=row.reason if row else "",
                last_contact_at=row.last_contact_at if row else None,
            )
        )
    return sites


def alerts(health: SystemHealth, handover_warn_s: float = 60.0) -> list[str]:
    """The few lines staff must act on (the portal shows them as a banner)."""
    out = []
    if not health.controllers_alive:
        out.append("No controller is running: jobs are not handed over to the factories.")
    for site in health.sites:
        if not site.available:
            out.append(f"{site.factory}: its scheduler does not answer ({site.reason}).")
        elif health.controllers_alive and not site.lease_valid:
            out.append(f"{site.factory}: no controller holds this site.")
    waiting = health.oldest_handover
    if waiting is not None and waiting.waited_s > handover_warn_s:
        out.append(
            f"Job {waiting.job_id} has waited {waiting.waited_s:,.0f} s for hand-over to "
            f"{waiting.factory}."
        )
    return out
