"""Organisations registered by their own people: the facts eligibility needs, the SME verdict.

Anyone signed in may register an organisation and becomes its member (a federation admin who
registers one for others does not). Members and federation admins read and edit it; to anyone
else it is as unknown as an id that does not exist. Partner and linked enterprises (the EU SME
definition) are kept in ``Organisation.enterprise_links``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Country, Membership, Organisation, User
from aifactory.domain.sme import EnterpriseFigures, RelatedEnterprise, assess_sme, classify_relation
from aifactory.domain.sme_classes import size_class
from aifactory.errors import Conflict, FieldError, Invalid, NotFound
from aifactory.services import audit, identity
from aifactory.services.audit import AuditAction
from aifactory.services.permissions import Principal
from aifactory.services.self_service_views import (
    LinkView,
    OrganisationDetail,
    OrganisationInput,
    SmeVerdict,
)
from aifactory.services.views import OrganisationView


def validated(raw: dict[str, Any]) -> OrganisationInput:
    """Parse an organisation's facts; every broken rule becomes one ``Invalid`` entry."""
    try:
        return OrganisationInput.model_validate(raw)
    except ValidationError as exc:
        details = [
            FieldError(".".join(str(p) for p in e["loc"]), e["type"], e["msg"])
            for e in exc.errors()
        ]
        raise Invalid("; ".join(f"{d.field}: {d.message}" for d in details), details) from None


def verdict(data: OrganisationInput) -> SmeVerdict:
    """The SME test on what the form says so far (nothing stored)."""
    if data.staff_headcount is None:
        return SmeVerdict(size="unknown", reason="give the staff headcount", contributions=[])
    own = EnterpriseFigures(
        Decimal(data.staff_headcount),
        Decimal(data.annual_turnover_eur or 0),
        Decimal(data.balance_sheet_eur or 0),
    )
    related = [
        RelatedEnterprise(
            link.name,
            EnterpriseFigures(
                Decimal(link.staff), Decimal(link.turnover_eur), Decimal(link.balance_sheet_eur)
            ),
            link.share,
        )
        for link in data.enterprise_links
    ]
    assessment = assess_sme(own, related)
    size, reason = size_class(assessment)
    return SmeVerdict(size=size, reason=reason, contributions=list(assessment.contributions))


def register(session: Session, who: Principal, data: OrganisationInput) -> OrganisationDetail:
    """Register an organisation; its registrant joins it unless a federation admin."""
    _check(session, data)
    identity.create_organisation(
        session,
        data.name,
        data.type,
        data.country_code,
        data.staff_headcount,
        data.annual_turnover_eur,
        data.balance_sheet_eur,
    )
    org = session.scalar(select(Organisation).where(Organisation.name == data.name))
    assert org is not None
    org.enterprise_links = _links(data)
    session.flush()
    audit.record(session, who.username, AuditAction.ORGANISATION_CREATE, ("organisation", org.id))
    if not who.is_admin:
        identity.add_membership(session, who.username, org.name, who.username)
    return detail(session, org)


def update(
    session: Session, who: Principal, org_id: int, changes: dict[str, Any]
) -> OrganisationDetail:
    """Change some facts of an organisation (its members or a federation admin)."""
    org = _visible(session, who, org_id)
    data = validated({**_as_input(org), **changes})
    _check(session, data, org.id)
    for name in ("name", "type", "country_code", "staff_headcount"):
        setattr(org, name, getattr(data, name))
    org.annual_turnover_eur = data.annual_turnover_eur
    org.balance_sheet_eur = data.balance_sheet_eur
    org.enterprise_links = _links(data)
    session.flush()
    audit.record(
        session,
        who.username,
        AuditAction.ORGANISATION_UPDATE,
        ("organisation", org.id),
        fields=sorted(changes),
    )
    return detail(session, org)


def get(session: Session, who: Principal, org_id: int) -> OrganisationDetail:
    return detail(session, _visible(session, who, org_id))


def as_input(session: Session, who: Principal, org_id: int) -> OrganisationInput:
    return OrganisationInput.model_validate(_as_input(_visible(session, who, org_id)))


def list_visible(session: Session, who: Principal) -> list[OrganisationDetail]:
    """Every organisation for federation admins; one's own for everyone else."""
    query = select(Organisation).order_by(Organisation.name)
    if not who.is_admin:
        mine = select(Membership.organisation_id).where(Membership.user_id == who.user_id)
        query = query.where(Organisation.id.in_(mine))
    return [detail(session, o) for o in session.scalars(query)]


def detail(session: Session, org: Organisation) -> OrganisationDetail:
    data = OrganisationInput.model_validate(_as_input(org))
    members = session.scalars(
        select(User.username)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organisation_id == org.id)
        .order_by(User.username)
    ).all()
    links = [
        LinkView(**link.model_dump(), relation=classify_relation(link.share))
        for link in data.enterprise_links
    ]
    return OrganisationDetail(
        **OrganisationView.model_validate(org).model_dump(),
        enterprise_links=links,
        members=list(members),
        sme=verdict(data),
    )


def _visible(session: Session, who: Principal, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    member = org is not None and (
        who.is_admin
        or session.scalar(
            select(Membership.id).where(
                Membership.organisation_id == org.id, Membership.user_id == who.user_id
            )
        )
        is not None
    )
    if org is None or not member:  # one answer for unknown and others' organisations
        raise NotFound(f"organisation {org_id} not found")
    return org


def _check(session: Session, data: OrganisationInput, own_id: int | None = None) -> None:
    """Raise every problem at once: a taken name as a conflict, the rest as invalid input."""
    found = problems(session, data.model_dump(), own_id)
    message = "; ".join(f"{p.field}: {p.message}" for p in found)
    if any(p.rule == "unique" and p.field == "name" for p in found):
        raise Conflict(f"organisation {data.name!r} already exists; {message}", found)
    if found:
        raise Invalid(message, found)


def problems(
    session: Session, raw: Mapping[str, Any], own_id: int | None = None
) -> list[FieldError]:
    """What the database knows is wrong (a taken name, an unknown country, a related enterprise
    listed twice), from the facts as given so far: forms show them with their own errors."""
    found: list[FieldError] = []
    name, country = raw.get("name"), raw.get("country_code")
    taken = session.scalar(select(Organisation.id).where(Organisation.name == name))
    if name and taken is not None and taken != own_id:
        found.append(FieldError("name", "unique", f"{name!r} is already registered"))
    if country and session.get(Country, country) is None:
        found.append(FieldError("country_code", "known_country", f"unknown country {country!r}"))
    links = list(raw.get("enterprise_links") or [])
    names = [link.get("name") for link in links]
    for i, link_name in enumerate(names):
        if link_name and link_name in names[:i]:
            msg = f"{link_name!r} is listed twice"
            found.append(FieldError(f"enterprise_links.{i}.name", "unique", msg))
    if links and raw.get("staff_headcount") is None:
        msg = "give your own staff headcount when you list related enterprises"
        found.append(FieldError("staff_headcount", "required", msg))
    return found


def _links(data: OrganisationInput) -> list[dict[str, Any]]:
    return [link.model_dump(mode="json") for link in data.enterprise_links]


def _as_input(org: Organisation) -> dict[str, Any]:
    return {
        "name": org.name,
        "type": org.type,
        "country_code": org.country_code,
        "staff_headcount": org.staff_headcount,
        "annual_turnover_eur": org.annual_turnover_eur,
        "balance_sheet_eur": org.balance_sheet_eur,
        "enterprise_links": [_stored_link(link) for link in org.enterprise_links or []],
    }


def _stored_link(link: dict[str, Any]) -> dict[str, Any]:
    """Links written before this module (tests, imports) may hold strings or floats."""
    return {
        "name": str(link["name"]),
        "share": Decimal(str(link["share"])),
        "staff": int(Decimal(str(link.get("staff", 0)))),
        "turnover_eur": int(Decimal(str(link.get("turnover_eur", 0)))),
        "balance_sheet_eur": int(Decimal(str(link.get("balance_sheet_eur", 0)))),
    }
