"""Public pages: the federation overview (map, factories, funding) and the calls by mode."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.clock import as_date
from aifactory.portal.calls_page import FILTER_LABELS, Filters, calls_context
from aifactory.portal.forms import FormErrors
from aifactory.portal.geo import europe_map
from aifactory.portal.web import MaybeUser, PortalRoute, render
from aifactory.services import registry

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
    mode: str = "",
    factory: str = "",
    status: str = "",
) -> Response:
    """Public: the published calls by access mode, filtered (GET form) and grouped by factory."""
    errors = FormErrors(set(FILTER_LABELS), FILTER_LABELS)
    context = calls_context(as_date(now), Filters(mode, factory, status), errors)
    return render(request, "calls.html", context, 422 if errors else 200)
