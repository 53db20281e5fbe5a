"""Federation registry use cases: seed, read, summarise and edit factories, systems, partitions."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, selectinload

from aifactory.db.models import (
    Country,
    Factory,
    FactoryMember,
    FundingLine,
    Partition,
    System,
)
from aifactory.domain.calls import call_slug
from aifactory.domain.enums import CountryStatus
from aifactory.domain.registry import (
    EU_SOURCES,
    FactoryStatus,
    SystemKind,
    count_by,
    countries_by_status,
    factory_transition,
)
from aifactory.errors import Conflict, Invalid, NotFound
from aifactory.services import access
from aifactory.services.audit import AuditAction, record
from aifactory.services.views import (
    CapacitySplitView,
    CountriesByStatus,
    CountryView,
    FactoryView,
    FederationSummary,
    PartitionView,
    SystemView,
)
from aifactory.settings import (
    CapacitySplit,
    CountrySpec,
    FactorySpec,
    FederationSpec,
    PartitionSpec,
    SystemSpec,
)

# --- seeding ---------------------------------------------------------------------------------


def seed_federation(session: Session, spec: FederationSpec) -> int:
    """Insert what the federation file holds and the database lacks; returns rows added.

    Idempotent: existing countries, factories, systems and partitions are left as operators
    may have changed them; only missing ones are added.
    """
    added = 0
    for country in spec.countries:
        if session.get(Country, country.code) is None:
            session.add(Country(code=country.code, name=country.name, status=country.status))
            added += 1
    session.flush()
    for factory in spec.factories:
        if _factory_or_none(session, factory.name) is None:
            create_factory(session, factory)
            added += 1
    if session.scalar(select(FundingLine.id).where(FundingLine.factory_id.is_(None))) is None:
        for line in spec.federation.funding:
            session.add(FundingLine(factory_id=None, **line.model_dump()))
            added += 1
    session.flush()
    return added


# --- reads -----------------------------------------------------------------------------------


def list_countries(session: Session) -> list[CountryView]:
    rows = session.scalars(select(Country).order_by(Country.code))
    return [CountryView.model_validate(c) for c in rows]


def list_factories(session: Session) -> list[FactoryView]:
    rows = session.scalars(_factory_query().order_by(Factory.name))
    return [factory_view(f) for f in rows]


def get_factory(session: Session, name: str) -> FactoryView:
    return factory_view(_factory(session, name))


def factory_view(f: Factory) -> FactoryView:
    systems = [SystemView.model_validate(s) for s in f.systems]
    return FactoryView(
        id=f.id,
        name=f.name,
        hosting_entity=f.hosting_entity,
        city=f.city,
        country=f.country_code,
        members=[m.country_code for m in f.members],
        status=f.status,
        capacity_split=CapacitySplitView(
            eu=f.eu_share,
            national=f.national_share,
            commercial=f.commercial_share,
            configuration=f.split_is_configuration,
        ),
        systems=systems,
        total_gpus=sum(p.gpus for s in systems for p in s.partitions),
    )


def federation_summary(session: Session) -> FederationSummary:
    """Totals computed from membership and registry data, never stored.

    A retired factory has left the federation: its systems, capacity and countries no longer
    count (its funding lines do: that money was committed).
    """
    query = _factory_query().where(Factory.status != FactoryStatus.RETIRED)
    factories = list(session.scalars(query.order_by(Factory.name)))
    status = {c.code: CountryStatus(c.status) for c in session.scalars(select(Country))}
    involved = {f.country_code for f in factories} | {
        m.country_code for f in factories for m in f.members
    }
    grouped = countries_by_status((code, status[code]) for code in involved)
    systems = [s for f in factories for s in f.systems]
    partitions = [p for s in systems for p in s.partitions]
    gpus = {
        f.name: sum(p.nodes * p.gpus_per_node for s in f.systems for p in s.partitions)
        for f in factories
    }
    funding: dict[str, int] = {}
    for line in session.scalars(select(FundingLine)):
        funding[line.source] = funding.get(line.source, 0) + line.amount_eur
    return FederationSummary(
        factories=len(factories),
        factory_names=[f.name for f in factories],
        countries=len(involved),
        countries_by_status=CountriesByStatus(**{k.value: v for k, v in grouped.items()}),
        systems_by_kind=count_by(s.kind for s in systems),
        new_systems=sum(1 for s in systems if s.kind == SystemKind.NEW),
        capacity_gpus_by_factory=gpus,
        capacity_gpus=sum(gpus.values()),
        capacity_nodes=sum(p.nodes for p in partitions),
        funding_by_source_eur=dict(sorted(funding.items())),
        funding_total_eur=sum(funding.values()),
        eu_funding_eur=sum(v for k, v in funding.items() if k in EU_SOURCES),
    )


# --- edits -----------------------------------------------------------------------------------


def add_country(session: Session, spec: CountrySpec) -> CountryView:
    if session.get(Country, spec.code) is not None:
        raise Conflict(f"country {spec.code} already exists")
    if session.scalar(select(Country.code).where(Country.name == spec.name)) is not None:
        raise Conflict(f"a country named {spec.name!r} already exists")
    country = Country(code=spec.code, name=spec.name, status=spec.status)
    session.add(country)
    session.flush()
    return CountryView.model_validate(country)


def create_factory(session: Session, spec: FactorySpec) -> FactoryView:
    """Add a factory with its systems and partitions; names must be new, countries known."""
    if _factory_or_none(session, spec.name) is not None:
        raise Conflict(f"factory {spec.name!r} already exists")
    check_call_prefix(session, spec.name, "name")
    _require_countries(session, [spec.country, *spec.members], "country")
    factory = Factory(
        name=spec.name,
        hosting_entity=spec.hosting_entity,
        city=spec.city,
        country_code=spec.country,
        status=spec.status,
        **_split_columns(spec.capacity_split),
        members=[FactoryMember(country_code=c) for c in spec.members],
    )
    session.add(factory)
    session.flush()
    for system in spec.systems:
        _insert_system(session, factory, system)
    session.refresh(factory)
    access.invalidate_calls()  # its access calls appear on the next request
    return factory_view(factory)


def check_call_prefix(session: Session, name: str, field: str) -> None:
    """A new factory's call ids (``<slug>-pg``...) must not be another factory's."""
    slug = call_slug(name)
    clash = next((n for n in session.scalars(select(Factory.name)) if call_slug(n) == slug), None)
    if clash is not None:
        raise Invalid.field(
            field, "distinct_calls", f"{name!r} would share the call ids {slug}-* of {clash!r}"
        )


def update_factory(session: Session, name: str, changes: dict[str, object]) -> FactoryView:
    """Change status, hosting entity, city, members or capacity split of a factory."""
    factory = _factory(session, name)
    if "members" in changes:
        members = list(changes.pop("members"))  # type: ignore[call-overload]
        _require_countries(session, members, "members")
        if factory.country_code in members:
            raise Invalid.field("members", "not_host", "the host country is not a member")
        factory.members = [FactoryMember(country_code=c) for c in members]
    if "capacity_split" in changes:
        split = changes.pop("capacity_split")
        assert isinstance(split, CapacitySplit)
        for column, share in _split_columns(split).items():
            setattr(factory, column, share)
    if "status" in changes:
        factory.status = factory_transition(
            FactoryStatus(factory.status), FactoryStatus(str(changes.pop("status")))
        )
    for key in ("hosting_entity", "city"):
        if key in changes:
            setattr(factory, key, changes[key])
    session.flush()
    session.refresh(factory)
    return factory_view(factory)


def set_factory_status(
    session: Session, name: str, status: FactoryStatus | str, actor: str
) -> FactoryView:
    """Move a factory to ``status`` through the one transition function; audited.

    ``draining``: the site finishes what runs but takes no new work; ``retired``: it has left
    service (final). Asking for the current status changes nothing and records nothing.

    Raises:
        NotFound: no such factory.
        Invalid: ``status`` is not a factory status.
        Conflict: the move is illegal (e.g. out of ``retired``).
    """
    try:
        target = FactoryStatus(status)
    except ValueError:
        allowed = ", ".join(s.value for s in FactoryStatus)
        raise Invalid.field("status", "one_of", f"{status!r} is not one of {allowed}") from None
    factory = _factory(session, name)
    current = FactoryStatus(factory.status)
    factory.status = factory_transition(current, target).value
    if target != current:
        record(
            session,
            actor,
            AuditAction.FACTORY_STATUS,
            ("factory", name),
            **{"from": current.value, "to": target.value},
        )
    session.flush()
    return factory_view(factory)


def add_system(session: Session, factory_name: str, spec: SystemSpec) -> SystemView:
    factory = _factory(session, factory_name)
    system = _insert_system(session, factory, spec)
    return SystemView.model_validate(system)


def add_partition(
    session: Session, factory_name: str, system_name: str, spec: PartitionSpec
) -> PartitionView:
    system = _system(session, factory_name, system_name)
    if any(p.name == spec.name for p in system.partitions):
        raise Conflict(f"partition {spec.name!r} already exists on {system_name!r}")
    partition = Partition(system_id=system.id, **spec.model_dump())
    session.add(partition)
    session.flush()
    return PartitionView.model_validate(partition)


def update_partition(
    session: Session,
    factory_name: str,
    system_name: str,
    partition_name: str,
    changes: dict[str, object],
) -> PartitionView:
    """Change a partition's capacity; the merged result is validated as a whole."""
    system = _system(session, factory_name, system_name)
    partition = next((p for p in system.partitions if p.name == partition_name), None)
    if partition is None:
        raise NotFound(f"partition {partition_name!r} not found on {system_name!r}")
    current = PartitionView.model_validate(partition).model_dump(exclude={"id"})
    merged = PartitionSpec.model_validate({**current, **changes})
    if merged.name != partition.name and any(p.name == merged.name for p in system.partitions):
        raise Conflict(f"partition {merged.name!r} already exists on {system_name!r}")
    for key, value in merged.model_dump().items():
        setattr(partition, key, value)
    session.flush()
    return PartitionView.model_validate(partition)


def factory_id(session: Session, name: str) -> int:
    return _factory(session, name).id


# --- helpers ---------------------------------------------------------------------------------


def _factory_query() -> Select[Factory]:
    return select(Factory).options(
        selectinload(Factory.members),
        selectinload(Factory.systems).selectinload(System.partitions),
    )


def _factory_or_none(session: Session, name: str) -> Factory | None:
    result: Factory | None = session.scalar(_factory_query().where(Factory.name == name))
    return result


def _factory(session: Session, name: str) -> Factory:
    factory = _factory_or_none(session, name)
    if factory is None:
        raise NotFound(f"factory {name!r} not found")
    return factory


def _system(session: Session, factory_name: str, system_name: str) -> System:
    factory = _factory(session, factory_name)
    system = next((s for s in factory.systems if s.name == system_name), None)
    if system is None:
        raise NotFound(f"system {system_name!r} not found at factory {factory_name!r}")
    return system


def _insert_system(session: Session, factory: Factory, spec: SystemSpec) -> System:
    if session.scalar(select(System.id).where(System.name == spec.name)) is not None:
        raise Conflict(f"system {spec.name!r} already exists")
    system = System(
        factory_id=factory.id,
        **spec.model_dump(exclude={"partitions"}),
        partitions=[Partition(**p.model_dump()) for p in spec.partitions],
    )
    session.add(system)
    session.flush()
    return system


def _require_countries(session: Session, codes: list[str], field: str) -> None:
    known = set(session.scalars(select(Country.code).where(Country.code.in_(codes))))
    unknown = sorted(set(codes) - known)
    if unknown:
        raise Invalid.field(field, "known_country", f"unknown country codes {unknown}")


def _split_columns(split: CapacitySplit) -> dict[str, float | bool]:
    return {
        "eu_share": split.eu,
        "national_share": split.national,
        "commercial_share": split.commercial,
        "split_is_configuration": split.configuration,
    }
