"""The hosting call's apply page: a new AI Factory (host, consortium, capacity split, a first
system and partition, funding by source) or a country joining a consortium, as one proposal.

The form's fields become the proposal's ``hosting`` document (``services/hosting.py``); the
service's field errors land beside the fields they name (``FIELDS``). More systems and
partitions are added after the award (`aif factories add-partition`, the API).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from aifactory.api.deps import NowDep, SessionDep
from aifactory.domain.enums import CountryStatus, ResearchKind
from aifactory.domain.registry import SystemKind
from aifactory.errors import Invalid
from aifactory.portal.forms import FormErrors, attempt
from aifactory.portal.web import CurrentUser, PortalRoute, redirect, render
from aifactory.services import access, identity, proposals, registry
from aifactory.services.proposals import ProposalInput
from aifactory.services.sessions import SignedIn

router = APIRouter(route_class=PortalRoute)

#: Form field -> the hosting document's path (the service names these in its errors).
FIELDS = {
    "factory_name": "factory.name",
    "hosting_entity": "factory.hosting_entity",
    "city": "factory.city",
    "country": "factory.country",
    "members": "factory.members",
    "split_eu": "factory.capacity_split.eu",
    "split_national": "factory.capacity_split.national",
    "split_commercial": "factory.capacity_split.commercial",
    "system_name": "factory.systems.0.name",
    "system_kind": "factory.systems.0.kind",
    "partition_name": "factory.systems.0.partitions.0.name",
    "gpu_model": "factory.systems.0.partitions.0.gpu_model",
    "nodes": "factory.systems.0.partitions.0.nodes",
    "gpus_per_node": "factory.systems.0.partitions.0.gpus_per_node",
    "gpu_memory_gb": "factory.systems.0.partitions.0.gpu_memory_gb",
    "charge_factor": "factory.systems.0.partitions.0.charge_factor",
    "join_factory": "factory_name",
    "join_country": "country",
    "funding_de": "funding.0.amount_eur",
    "funding_national": "funding.1.amount_eur",
    "new_country_code": "countries.0.code",
    "new_country_name": "countries.0.name",
    "new_country_status": "countries.0.status",
}
LABELS = {
    "organisation": "Organisation",
    "title": "Title",
    "summary": "Summary",
    "kind": "What you propose",
    "factory_name": "Factory name",
    "hosting_entity": "Hosting entity",
    "city": "City",
    "country": "Host country",
    "members": "Other consortium countries",
    "split_eu": "EU share %",
    "split_national": "National share %",
    "split_commercial": "Commercial share %",
    "system_name": "System name",
    "system_kind": "System kind",
    "partition_name": "Partition name",
    "gpu_model": "GPU model",
    "nodes": "Nodes",
    "gpus_per_node": "GPUs per node",
    "gpu_memory_gb": "GPU memory (GB)",
    "charge_factor": "Charge factor",
    "join_factory": "Factory to join",
    "join_country": "Joining country",
    "funding_de": "Digital Europe funding (EUR)",
    "funding_national": "National funding (EUR)",
    "new_country_code": "New country code",
    "new_country_name": "New country name",
    "new_country_status": "New country status",
}
ALIASES = {f"hosting.{path}": name for name, path in FIELDS.items()} | {
    "hosting.factory": "factory_name",
    "hosting.factory.capacity_split": "split_eu",
    "hosting.factory.systems.0.partitions": "partition_name",
}


class HostingErrors(FormErrors):
    """Form errors with the service's ``hosting.*`` paths mapped onto this form's fields."""

    def add(self, field: str, message: str) -> None:
        super().add(ALIASES.get(field, field), message)


@router.get("/calls/{call_id}/hosting")
def hosting_form(
    call_id: str, request: Request, session: SessionDep, user: CurrentUser
) -> Response:
    """Signed in: the hosting call's form (a new factory, or joining one)."""
    orgs = identity.get_user(session, user.principal.username).organisations
    form = {"organisation": next(iter(orgs), ""), "kind": "new_factory", "system_kind": "new"}
    form |= {"split_eu": "50", "split_national": "50", "split_commercial": "0"}
    form |= {"charge_factor": "1", "new_country_status": "member_state"}
    return _page(request, session, user, call_id, form, HostingErrors(set(LABELS), LABELS))


@router.post("/calls/{call_id}/hosting")
async def hosting_apply(
    call_id: str, request: Request, session: SessionDep, user: CurrentUser, now: NowDep
) -> Response:
    """Create and submit the hosting proposal; every problem is shown beside its field."""
    raw = await request.form()
    form = {k: str(v)[:500] for k, v in raw.items() if isinstance(v, str) and k != "csrf_token"}
    errors = HostingErrors(set(LABELS), LABELS)
    data = _proposal(call_id, form, errors)
    if not errors:
        pid = attempt(session, errors, lambda: _create_and_submit(session, user, data, now))
        if pid is not None:
            return redirect(f"/proposals/{pid}?notice=submitted")
    return _page(request, session, user, call_id, form, errors, 422)


def _create_and_submit(session: Session, user: SignedIn, data: ProposalInput, now: datetime) -> int:
    draft = proposals.create(session, user.principal, data, now)
    return proposals.submit(session, user.principal, draft.id, now).id


def _page(
    request: Request,
    session: Session,
    user: SignedIn,
    call_id: str,
    form: Mapping[str, str],
    errors: FormErrors,
    status: int = 200,
) -> Response:
    call = access.get_call(call_id)
    if call.mode != "HC":
        raise Invalid.field("call_id", "hosting_call", f"{call_id} is not a hosting call")
    context = {
        "title": call.title,
        "call": call,
        "form": form,
        "organisations": identity.get_user(session, user.principal.username).organisations,
        "factories": [f.name for f in registry.list_factories(session)],
        "system_kinds": [k.value for k in SystemKind],
        "country_statuses": [s.value for s in CountryStatus],
        **errors.context(),
    }
    return render(request, "hosting.html", context, status)


class _Read:
    """The form's values: text stripped, numbers as people write them (bad ones recorded)."""

    def __init__(self, form: Mapping[str, str], errors: FormErrors) -> None:
        self.form, self.errors = form, errors

    def __call__(self, name: str) -> str:
        return self.form.get(name, "").strip()

    def whole(self, name: str) -> int:
        return self.errors.parse(name, self(name), int) or 0

    def number(self, name: str, default: float = 0.0) -> float:
        value = self.errors.parse(name, self(name), Decimal)
        return default if value is None else float(value)


def _proposal(call_id: str, form: Mapping[str, str], errors: FormErrors) -> ProposalInput:
    v = _Read(form, errors)
    for name in ("organisation", "title"):
        errors.require(name, v(name) or None)
    hosting: dict[str, Any] = {"kind": v("kind")}
    if v("kind") == "join":
        hosting |= {"factory_name": v("join_factory"), "country": v("join_country").upper()}
    else:
        hosting |= {"kind": "new_factory", "factory": _factory(v)}
    hosting["funding"] = [
        {"source": "digital_europe", "amount_eur": v.whole("funding_de")},
        {"source": "national", "amount_eur": v.whole("funding_national")},
    ]
    if v("new_country_code"):
        hosting["countries"] = [
            {
                "code": v("new_country_code").upper(),
                "name": v("new_country_name"),
                "status": v("new_country_status"),
            }
        ]
    return ProposalInput(
        call_id=call_id,
        title=v("title"),
        organisation=v("organisation"),
        research_kind=ResearchKind.OPEN_RD,
        summary=v("summary"),
        hosting=hosting,
    )


def _factory(v: _Read) -> dict[str, Any]:
    shares = {key: v.number(f"split_{key}") / 100 for key in ("eu", "national", "commercial")}
    factory: dict[str, Any] = {
        "name": v("factory_name"),
        "hosting_entity": v("hosting_entity"),
        "city": v("city"),
        "country": v("country").upper(),
        "members": [c.strip().upper() for c in v("members").split(",") if c.strip()],
        "capacity_split": shares,
    }
    if v("system_name"):
        system: dict[str, Any] = {"name": v("system_name"), "kind": v("system_kind")}
        if v("partition_name"):
            system["partitions"] = [
                {
                    "name": v("partition_name"),
                    "gpu_model": v("gpu_model"),
                    "nodes": v.whole("nodes"),
                    "gpus_per_node": v.whole("gpus_per_node"),
                    "gpu_memory_gb": v.number("gpu_memory_gb"),
                    "charge_factor": v.number("charge_factor", 1.0),
                }
            ]
        factory["systems"] = [system]
    return factory
