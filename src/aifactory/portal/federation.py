"""Public pages: the federation overview (map, factories, funding), one factory's page (with
its status control for its operators and admins: how a site is drained) and the calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.clock import as_date
from aifactory.domain.registry import FACTORY_MOVES, FactoryStatus
from aifactory.portal.calls_page import FILTER_LABELS, Filters, calls_context
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.geo import europe_map
from aifactory.portal.web import CurrentUser, MaybeUser, PortalRoute, redirect, render
from aifactory.services import access, registry
from aifactory.services.permissions import Action, allowed, authorize
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)


def states_line(member_states: int, participating: int) -> str:
    """E.g. "15 Member States + 2 participating states", from the computed groups."""
    ms = "Member State" if member_states == 1 else "Member States"
    ps = "participating state" if participating == 1 else "participating states"
    return f"{member_states} {ms} + {participating} {ps}"


@router.get("/federation")
def overview(request: Request, session: SessionDep, user: MaybeUser) -> Response:
    """Public: what the founding announcement made public (factories, countries, funding).

    Also the front page for visitors who are not signed in (``homes.home``)."""
    summary = registry.federation_summary(session)
    factories = registry.list_factories(session)
    countries = registry.list_countries(session)
    statuses = {c.code: c.status for c in countries}
    names = {c.code: c.name for c in countries}
    groups = summary.countries_by_status
    funding = [
        (source, amount, amount / summary.funding_total_eur if summary.funding_total_eur else 0)
        for source, amount in summary.funding_by_source_eur.items()
    ]
    context = {
        "title": "Federation overview",
        "summary": summary,
        "factories": factories,
        "names": names,
        "member_names": sorted(names.get(c, c) for c in groups.member_state),
        "participating_names": sorted(names.get(c, c) for c in groups.participating_state),
        "states_line": states_line(len(groups.member_state), len(groups.participating_state)),
        "funding": funding,
        "map": europe_map(factories, statuses, names),
    }
    return render(request, "overview.html", context)


@router.get("/calls")
def calls(
    request: Request,
    now: NowDep,
    user: MaybeUser,
    _: SessionDep,  # opening it brings in the calls of factories added since
    mode: str = "",
    factory: str = "",
    status: str = "",
) -> Response:
    """Public: the published calls by access mode, filtered (GET form) and grouped by factory."""
    errors = FormErrors(set(FILTER_LABELS), FILTER_LABELS)
    context = calls_context(as_date(now), Filters(mode, factory, status), errors)
    return render(request, "calls.html", context, 422 if errors else 200)


@router.get("/factories/{name}")
def factory_page(
    name: str, request: Request, session: SessionDep, user: MaybeUser, now: NowDep
) -> Response:
    """Public: one factory, its systems and its calls; its operators and admins change its
    status here (``draining`` stops new work at the site)."""
    return render(request, "factory.html", _factory_context(session, name, user, now))


@router.post("/factories/{name}/status")
def factory_status(
    name: str,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    now: NowDep,
    status: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    """Operators of the factory and admins move it (the service checks the move is legal)."""
    authorize(user.principal, Action.EDIT_FACTORY, registry.factory_id(session, name))
    errors = FormErrors({"status"}, {"status": "New status"})
    if status not in {s.value for s in FactoryStatus}:
        errors.add("status", "choose a status from the list")
    else:
        actor = user.principal.username
        moved = attempt(
            session, errors, lambda: registry.set_factory_status(session, name, status, actor)
        )
        if moved is not None:
            return redirect(f"/factories/{quote(name, safe='')}")
    context = _factory_context(session, name, user, now) | errors.context()
    return render(request, "factory.html", context, 422)


def _factory_context(
    session: Session, name: str, user: SignedIn | None, now: datetime
) -> dict[str, Any]:
    factory = registry.get_factory(session, name)
    current = FactoryStatus(factory.status)
    may_edit = user is not None and allowed(user.principal, Action.EDIT_FACTORY, factory.id)
    return {
        "title": factory.name,
        "factory": factory,
        "calls": access.list_calls(as_date(now), factory=factory.name),
        "may_edit": may_edit,
        "moves": sorted(FACTORY_MOVES[current]),
    }
