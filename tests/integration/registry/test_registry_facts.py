"""The default federation holds the facts of the founding announcement (DESIGN.md section 3)."""

from __future__ import annotations

from aifactory.db.engine import Database
from aifactory.services import registry
from aifactory.settings import load_federation

HOSTS = {
    "BSC AIF": ("Barcelona Supercomputing Centre", "Barcelona", "ES"),
    "IT4LIA": ("CINECA", "Bologna Tecnopolo", "IT"),
    "LUMI AIF": ("CSC", "Kajaani", "FI"),
    "Meluxina-AI": ("LuxProvide", "Bissen", "LU"),
    "MIMER": ("University of Linköping", "Linköping", "SE"),
    "HammerHAI": ("University of Stuttgart", "Stuttgart", "DE"),
    "Pharos": ("GRNET", "Athens", "GR"),
}
JOINED = {
    "BSC AIF": ["PT", "RO", "TR"],
    "IT4LIA": ["AT", "SI"],
    "LUMI AIF": ["CZ", "DK", "EE", "NO", "PL"],
}


def test_seven_factories_with_their_hosts_cities_and_countries(db: Database) -> None:
    with db.session() as s:
        factories = {f.name: f for f in registry.list_factories(s)}
    assert set(factories) == set(HOSTS)
    for name, (entity, city, country) in HOSTS.items():
        f = factories[name]
        assert (f.hosting_entity, f.city, f.country) == (entity, city, country)
        assert f.members == JOINED.get(name, [])


def test_totals_are_computed_17_countries_15_member_states_2_participating(db: Database) -> None:
    with db.session() as s:
        summary = registry.federation_summary(s)
    assert summary.factories == 7
    assert summary.countries == 17
    assert len(summary.countries_by_status.member_state) == 15
    assert summary.countries_by_status.participating_state == ["NO", "TR"]
    assert summary.countries_by_status.other == []


def test_totals_follow_membership_data_when_a_country_joins(db: Database) -> None:
    with db.session() as s:
        registry.update_factory(s, "Pharos", {"members": ["CY", "CH"]})
    with db.session() as s:
        summary = registry.federation_summary(s)
    assert summary.countries == 19
    assert len(summary.countries_by_status.member_state) == 16
    assert summary.countries_by_status.participating_state == ["CH", "NO", "TR"]


def test_five_new_systems_one_upgrade_of_marenostrum5_one_associated_with_daedalus(
    db: Database,
) -> None:
    with db.session() as s:
        factories = {f.name: f for f in registry.list_factories(s)}
        summary = registry.federation_summary(s)
    assert summary.new_systems == 5
    assert summary.systems_by_kind == {"associated": 1, "new": 5, "upgrade": 1}
    new_countries = sorted(
        f.country for f in factories.values() for x in f.systems if x.kind == "new"
    )
    assert new_countries == ["DE", "FI", "IT", "LU", "SE"]
    (bsc,) = factories["BSC AIF"].systems
    assert (bsc.kind, bsc.base_system) == ("upgrade", "MareNostrum 5")
    (gr,) = factories["Pharos"].systems
    assert (gr.kind, gr.base_system) == ("associated", "DAEDALUS")


def test_experimental_platforms_in_spain_and_finland_and_deployment_2025_2026(db: Database) -> None:
    with db.session() as s:
        factories = registry.list_factories(s)
    experimental = sorted(
        f.country for f in factories for x in f.systems if x.experimental_platform
    )
    assert experimental == ["ES", "FI"]
    years = {x.deployment_year for f in factories for x in f.systems}
    assert years <= {2025, 2026}


def test_funding_is_1_5_bn_half_eu_through_digital_europe_and_horizon_europe(db: Database) -> None:
    with db.session() as s:
        summary = registry.federation_summary(s)
    assert summary.funding_total_eur == 1_500_000_000
    assert summary.eu_funding_eur * 2 == summary.funding_total_eur
    eu_sources = {k for k in summary.funding_by_source_eur if k != "national"}
    assert eu_sources == {"digital_europe", "horizon_europe"}


def test_hardware_not_in_the_announcement_is_marked_as_configuration(db: Database) -> None:
    with db.session() as s:
        factories = {f.name: f for f in registry.list_factories(s)}
    partitions = [p for f in factories.values() for x in f.systems for p in x.partitions]
    assert partitions and all(p.configuration for p in partitions)
    assert factories["IT4LIA"].systems[0].partitions[0].gpu_model == "GB200"
    bsc = {p.name for p in factories["BSC AIF"].systems[0].partitions}
    assert bsc == {"llm-train", "inference"}


def test_seeding_twice_adds_nothing_and_keeps_operator_changes(db: Database) -> None:
    with db.session() as s:
        registry.update_partition(s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 7})
    with db.session() as s:
        assert registry.seed_federation(s, load_federation()) == 0
    with db.session() as s:
        lumi = registry.get_factory(s, "LUMI AIF")
    assert lumi.systems[0].partitions[0].nodes == 7
