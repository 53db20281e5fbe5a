"""Hosting proposals (mode HC): what one carries, how it is checked, and what its award does.

A hosting proposal either proposes a **new factory** (its hosting entity, city, country,
consortium members, capacity split, systems with partitions, funding by source) or has a
country **join** an existing factory's consortium with its funding. Countries unknown to the
registry (a new Member State or participating state) come with the proposal, with their status.
Accepting the proposal (``accept``) writes all of it to the registry: the factory in status
``selected``, its funding lines, new countries; its access calls follow from the registry
(``services.access.sync_calls``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Country, Factory, FactoryMember, FundingLine
from aifactory.domain.access_modes import invalid_from_validation
from aifactory.domain.registry import FactoryStatus, FundingSource
from aifactory.errors import Conflict, Invalid
from aifactory.services import registry
from aifactory.services.audit import AuditAction, record
from aifactory.settings import CountrySpec, FactorySpec, SInt

MAX_FUNDING_ROWS = 8
MAX_NEW_COUNTRIES = 30


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FundingIn(_In):
    """One funding commitment: Digital Europe (the EU's share) or national, etc."""

    source: FundingSource
    amount_eur: SInt = Field(ge=0, le=10**12)
    purpose: str = Field(default="", max_length=200)


class HostingProposal(_In):
    """What a hosting proposal proposes: a new factory, or a country joining one.

    ``funding`` lists commitments by source; ``funding_eur`` is a shorthand for one national
    commitment. ``countries`` names countries the registry does not know yet, with their status
    (known ones may be listed too: they are left as they are).
    """

    kind: Literal["new_factory", "join"]
    factory: FactorySpec | None = None
    factory_name: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    countries: list[CountrySpec] = Field(default_factory=list, max_length=MAX_NEW_COUNTRIES)
    funding: list[FundingIn] = Field(default_factory=list, max_length=MAX_FUNDING_ROWS)
    funding_eur: SInt = Field(default=0, ge=0, le=10**12)

    @model_validator(mode="after")
    def _complete(self) -> HostingProposal:
        if self.kind == "new_factory" and self.factory is None:
            raise ValueError("a new_factory proposal includes the factory")
        if self.kind == "join" and not (self.factory_name and self.country):
            raise ValueError("a join proposal names factory_name and country")
        sources = [f.source for f in self.funding]
        if len(set(sources)) != len(sources):
            raise ValueError("funding lists each source once")
        codes = [c.code for c in self.countries]
        if len(set(codes)) != len(codes):
            raise ValueError("countries lists each code once")
        return self

    def stored(self) -> dict[str, Any]:
        """The JSON kept on the proposal (read back by ``parse``)."""
        return self.model_dump(mode="json", exclude_none=True)

    def funding_lines(self) -> list[FundingIn]:
        lines = list(self.funding)
        if self.funding_eur:
            lines.append(FundingIn(source=FundingSource.NATIONAL, amount_eur=self.funding_eur))
        return [line for line in lines if line.amount_eur > 0]


def parse(data: Any) -> HostingProposal:
    """Read a hosting payload (as sent, or as stored, older join payloads too).

    Raises:
        Invalid: one entry per broken rule, fields prefixed ``hosting.``.
    """
    legacy_join = isinstance(data, dict) and isinstance(data.get("factory"), str)
    if legacy_join and data.get("kind") == "join":
        data = {k: v for k, v in data.items() if k != "factory"} | {"factory_name": data["factory"]}
    try:
        return HostingProposal.model_validate(data)
    except ValidationError as exc:
        raise invalid_from_validation(exc, "hosting") from exc


def check(session: Session, data: Any) -> dict[str, Any]:
    """Check a hosting payload against the registry; returns what to store on the proposal.

    Raises:
        Invalid: the payload is malformed, names unknown countries, a factory name that is
            taken (new factory) or unknown (join), or a country already in that consortium.
    """
    hosting = parse(data)
    _validate(session, hosting)
    return hosting.stored()


def accept(session: Session, data: Any, actor: str) -> str:
    """Carry out an accepted hosting proposal; returns the factory's name.

    New countries are added first, then the new factory (status ``selected``, its systems and
    partitions) or the joining member, then the funding lines.
    """
    hosting = parse(data)
    _validate(session, hosting)
    added = _add_countries(session, hosting)
    if hosting.kind == "new_factory" and hosting.factory is not None:
        spec = hosting.factory.model_copy(update={"status": FactoryStatus.SELECTED})
        name = registry.create_factory(session, spec).name
        purpose = f"hosting: {name}"
    else:
        name, purpose = str(hosting.factory_name), f"{hosting.country} joins"
        factory = _factory(session, name)
        factory.members.append(FactoryMember(country_code=str(hosting.country)))
    factory_id = registry.factory_id(session, name)
    for line in hosting.funding_lines():
        session.add(
            FundingLine(
                factory_id=factory_id,
                source=line.source,
                purpose=line.purpose or purpose,
                amount_eur=line.amount_eur,
            )
        )
    session.flush()
    record(
        session,
        actor,
        AuditAction.FACTORY_GROWTH,
        ("factory", name),
        kind=hosting.kind,
        country=hosting.country or "",
        countries_added=added,
        funding_eur=sum(line.amount_eur for line in hosting.funding_lines()),
    )
    return name


# --- checks ----------------------------------------------------------------------------------


def _validate(session: Session, hosting: HostingProposal) -> None:
    if hosting.kind == "new_factory":
        _check_new(session, hosting)
    else:
        _check_join(session, hosting)


def _check_new(session: Session, hosting: HostingProposal) -> None:
    spec = hosting.factory
    assert spec is not None
    if session.scalar(select(Factory.id).where(Factory.name == spec.name)) is not None:
        raise Invalid.field(
            "hosting.factory.name", "unique", f"a factory named {spec.name!r} already exists"
        )
    registry.check_call_prefix(session, spec.name, "hosting.factory.name")
    _require_known(session, hosting, [spec.country], "hosting.factory.country")
    _require_known(session, hosting, spec.members, "hosting.factory.members")


def _check_join(session: Session, hosting: HostingProposal) -> None:
    factory = session.scalar(select(Factory).where(Factory.name == hosting.factory_name))
    if factory is None:
        raise Invalid.field(
            "hosting.factory_name", "known_factory", f"no factory {hosting.factory_name!r}"
        )
    country = str(hosting.country)
    _require_known(session, hosting, [country], "hosting.country")
    if country == factory.country_code or any(m.country_code == country for m in factory.members):
        raise Conflict(f"{country} is already in the {factory.name} consortium")


def _require_known(
    session: Session, hosting: HostingProposal, codes: list[str], field: str
) -> None:
    listed = {c.code for c in hosting.countries}
    known = set(session.scalars(select(Country.code).where(Country.code.in_(codes))))
    unknown = sorted(set(codes) - known - listed)
    if unknown:
        raise Invalid.field(
            field,
            "known_country",
            f"unknown country codes {unknown}: add them to hosting.countries with their status",
        )


def _add_countries(session: Session, hosting: HostingProposal) -> list[str]:
    added = []
    for spec in hosting.countries:
        if session.get(Country, spec.code) is None:
            registry.add_country(session, spec)
            added.append(spec.code)
    return added


def _factory(session: Session, name: str) -> Factory:
    factory = session.scalar(select(Factory).where(Factory.name == name))
    if factory is None:
        raise Invalid.field("hosting.factory_name", "known_factory", f"no factory {name!r}")
    return factory
