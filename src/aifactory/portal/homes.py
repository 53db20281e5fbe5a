"""The signed-in front page: one section per role held, the most actionable first.

Anonymous visitors get the public federation overview here (it also lives at ``/federation``).
Every item links to the page where its next step is taken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep, SettingsDep
from aifactory.domain.clock import as_date
from aifactory.domain.enums import Role
from aifactory.portal import federation
from aifactory.portal.charts import burn_down
from aifactory.portal.charts_time import usage_over_time
from aifactory.portal.web import MaybeUser, PortalRoute, render
from aifactory.services import homes, projects, registry, timeseries
from aifactory.services.permissions import Principal
from aifactory.services.sessions import SignedIn
from aifactory.settings import Settings

router = APIRouter(route_class=PortalRoute)
USAGE_DAYS = 28


@dataclass
class Section:
    """One role's part of the home: its template block, data, and how urgent it is."""

    key: str
    title: str
    data: dict[str, Any] = field(default_factory=dict)
    actions: int = 0
    overdue: int = 0


@dataclass(frozen=True)
class Ctx:
    session: Session
    settings: Settings
    user: SignedIn
    now: datetime

    @property
    def who(self) -> Principal:
        return self.user.principal


def _applicant(c: Ctx) -> Section | None:
    steps = homes.applicant(c.session, c.who, c.now)
    if not steps and not c.who.has(Role.APPLICANT):
        return None
    open_ = [s for s in steps if s.due is not None]
    late = sum(1 for s in steps if s.overdue)
    return Section("applicant", "My proposals", {"steps": steps}, len(open_), late)


def _member(c: Ctx) -> Section | None:
    mine = homes.member(c.session, c.who)
    if not mine:
        return None
    charts = {
        a.id: burn_down(
            projects.get_ledger(c.session, c.who, a.id),
            c.now,
            f"Allocation {a.id} of {p.project.code} on {a.partition}: burn-down",
            a.start_date,
            a.end_date,
        )
        for p in mine
        for a in p.project.allocations
    }
    running = sum(len(p.running) + len(p.waiting) for p in mine)
    return Section("member", "My projects", {"projects": mine, "charts": charts}, running)


def _reviewer(c: Ctx) -> Section | None:
    if not c.who.has(Role.REVIEWER):
        return None
    due = homes.reviews_due(c.session, c.who, c.now)
    late = sum(1 for p in due if p.overdue)
    return Section("reviewer", "Reviews due", {"due": due}, len(due), late)


def _operator(c: Ctx) -> Section | None:
    ids = homes.my_factories(c.who)
    if not ids:
        return None
    names = [f.name for f in registry.list_factories(c.session) if f.id in ids]
    view = homes.operator(c.session, c.who, c.now, c.settings.lease_ttl_s, names)
    data = {"home": view, "factories": names}
    title = f"Operating {', '.join(names)}"
    return Section("operator", title, data, len(view.assessments), view.overdue)


def _admin(c: Ctx) -> Section | None:
    if not c.who.is_admin:
        return None
    view = homes.admin(c.session, c.who, c.now)
    end = as_date(c.now)
    start = end - timedelta(days=USAGE_DAYS - 1)
    series = timeseries.usage_series(c.session, c.who, "factory", start, end)
    chart = usage_over_time(series, f"GPU-hours per day by factory, last {USAGE_DAYS} days", {})
    data = {"home": view, "usage": chart, "series": series}
    return Section("admin", "Federation administration", data, len(view.batches), len(view.overdue))


#: Base order when urgency ties: people waiting on me first, my own work after.
SECTIONS: list[Callable[[Ctx], Section | None]] = [
    _reviewer,
    _operator,
    _admin,
    _applicant,
    _member,
]


def sections(c: Ctx) -> list[Section]:
    """The sections for the roles held: overdue work first, then other work, then the rest."""
    found = [s for build in SECTIONS if (s := build(c)) is not None]
    return sorted(found, key=lambda s: (s.overdue == 0, s.actions == 0))


@router.get("/")
def home(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    user: MaybeUser,
    now: NowDep,
) -> Response:
    """Signed in: my home (one section per role). Signed out: the public federation overview."""
    if user is None:
        return federation.overview(request, session, user)
    found = sections(Ctx(session, settings, user, now))
    context = {"title": "Home", "sections": found, "today": as_date(now), "now": now}
    return render(request, "home.html", context)
