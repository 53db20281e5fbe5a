"""Usage reports by funding source as the founding announcement defines them, and by the
country of the factory or of the user's organisation; API, CLI and CSV, SQLite and PostgreSQL.

Two factories of different shares (LUMI AIF 0.5 / 0.4 / 0.1, Meluxina-AI 0.5 / 0.3 / 0.2) and
two organisations (FI, PT); ``aifactory.testing.reports`` says what is awarded and charged.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Job, JobAttempt, Partition, System, User
from aifactory.domain.enums import LedgerKind, ResearchKind
from aifactory.domain.ledger import FundingSplit, to_milli
from aifactory.server import BackgroundServer
from aifactory.services import ledger, timeseries
from aifactory.services import report_places as where
from aifactory.services.identity import principal_of
from aifactory.settings import Settings
from aifactory.testing.access import ok
from aifactory.testing.people import Person
from aifactory.testing.reports import GRANTED, USED, seed_usage

API = "/api/v1"
DE, NATIONAL, COMMERCIAL, HE = "digital_europe", "national", "commercial", "horizon_europe"


def _report(api: TestClient, who: Person, group: str) -> dict[str, dict[str, object]]:
    body = ok(api.get(f"{API}/reports/usage?group_by={group}", headers=who.headers))
    rows = {r["key"]: r for r in body["rows"]}
    rows["total"] = body["total"]
    rows["funding"] = {f["source"]: f for f in body["funding"]}
    return rows


def _milli(row: dict[str, object], field: str) -> int:
    return to_milli(Decimal(str(row[field])))


def test_each_gpu_hour_is_split_by_its_factorys_shares_and_horizon_europe_takes_none(
    db: Database, api: TestClient, admin: Person
) -> None:
    seed_usage(api, db, admin)
    rows = _report(api, admin, "funding")
    lumi, melux, com = USED["lumi"], USED["meluxina"], USED["commercial"]
    # hours x shares, exact in milli-GPU-hours: LUMI 0.5/0.4/0.1, Meluxina 0.5/0.3/0.2,
    # commercial work all commercial wherever it ran
    assert _milli(rows[DE], "used") == lumi * 5 // 10 + melux * 5 // 10 == 161_725
    assert _milli(rows[NATIONAL], "used") == lumi * 4 // 10 + melux * 3 // 10 == 109_380
    assert _milli(rows[COMMERCIAL], "used") == lumi // 10 + melux * 2 // 10 + com == 62_345
    assert _milli(rows["total"], "used") == sum(USED.values())
    g = GRANTED
    assert _milli(rows[DE], "granted") == g["lumi"] // 2 + g["meluxina"] // 2
    assert (
        _milli(rows[COMMERCIAL], "granted")
        == g["lumi"] // 10 + g["meluxina"] // 5 + g["commercial"]
    )
    assert [rows[k]["label"] for k in (DE, NATIONAL, COMMERCIAL)] == [
        "EU: Digital Europe (infrastructure)",
        "National",
        "Commercial",
    ]
    # Horizon Europe funds services: € beside the rows, never a GPU-hour row
    assert HE not in rows
    funding = rows["funding"]
    assert isinstance(funding, dict)
    assert funding[HE]["funds"] == "services" and funding[HE]["amount_eur"] == 150_000_000
    assert funding[HE]["label"] == "EU: Horizon Europe (services)"
    assert funding[DE]["amount_eur"] == 600_000_000 and funding[DE]["funds"] == "gpu_hours"
    assert funding[NATIONAL]["amount_eur"] == 750_000_000


def test_by_user_country_differs_from_by_factory_country(
    db: Database, api: TestClient, admin: Person
) -> None:
    seed_usage(api, db, admin)
    user = _report(api, admin, "user-country")
    factory = _report(api, admin, "factory-country")
    # the FI start-up used LUMI (FI) and Meluxina-AI (LU); the PT one used LUMI (FI)
    assert _milli(user["FI"], "used") == USED["lumi"] + USED["meluxina"]
    assert _milli(user["PT"], "used") == USED["commercial"]
    assert _milli(factory["FI"], "used") == USED["lumi"] + USED["commercial"]
    assert _milli(factory["LU"], "used") == USED["meluxina"]
    assert "LU" not in user and "PT" not in factory
    assert user["PT"]["label"] == "Portugal" and factory["LU"]["label"] == "Luxembourg"
    assert _milli(user["total"], "used") == _milli(factory["total"], "used")
    old = api.get(f"{API}/reports/usage?group_by=country", headers=admin.headers)
    assert old.status_code == 422  # which country? the caller must say


def test_a_project_on_two_factories_rolls_up_and_each_sees_only_its_own(
    db: Database, api: TestClient, admin: Person
) -> None:
    seeded = seed_usage(api, db, admin)
    project = _report(api, seeded.anna, "project")
    mine = project[seeded.project]
    assert mine["allocations"] == 2
    assert _milli(mine, "used") == USED["lumi"] + USED["meluxina"]
    assert _milli(mine, "granted") == GRANTED["lumi"] + GRANTED["meluxina"]
    assert [k for k in project if k not in ("total", "funding")] == [seeded.project]
    factory = _report(api, admin, "factory")
    assert factory["LUMI AIF"]["allocations"] == 2
    assert _milli(factory["Meluxina-AI"], "used") == USED["meluxina"]
    # a member sees the split of their own hours only; the € totals are the federation's
    joao = _report(api, seeded.joao, "funding")
    assert _milli(joao[COMMERCIAL], "used") == USED["commercial"]
    assert _milli(joao[DE], "used") == 0 and _milli(joao["total"], "used") == USED["commercial"]


def test_csv_carries_the_groupings_labels_and_funding(
    db: Database, api: TestClient, admin: Person
) -> None:
    seed_usage(api, db, admin)
    r = api.get(f"{API}/reports/usage.csv?group_by=funding", headers=admin.headers)
    assert 'filename="usage-by-funding.csv"' in r.headers["content-disposition"]
    table = list(csv.DictReader(io.StringIO(r.text)))
    by_key = {row["funding"]: row for row in table}
    assert by_key[DE]["label"] == "EU: Digital Europe (infrastructure)"
    assert to_milli(by_key[NATIONAL]["used"]) == 109_380
    assert by_key[DE]["funding_eur"] == "600000000"
    assert by_key[HE]["used"] == "" and by_key[HE]["funding_eur"] == "150000000"
    for group in ("user-country", "factory-country"):
        r = api.get(f"{API}/reports/usage.csv?group_by={group}", headers=admin.headers)
        head, *rows = list(csv.reader(io.StringIO(r.text)))
        assert head == [group, "allocations", "granted", "used", "reserved", "remaining", "label"]
        assert {row[0] for row in rows} == (
            {"FI", "PT", "total"} if group == "user-country" else {"FI", "LU", "total"}
        )


def test_the_cli_reports_by_both_countries_and_by_funding(
    db: Database, api: TestClient, admin: Person, settings: Settings, tmp_path: object
) -> None:
    seed_usage(api, db, admin)
    runner = CliRunner()
    with BackgroundServer(settings, db) as srv:
        env = {"AIF_URL": srv.url, "AIF_TOKEN": admin.token, "AIF_CONFIG_DIR": str(tmp_path)}

        def aif(*args: str) -> str:
            result = runner.invoke(app, list(args), env=env)
            assert result.exit_code == 0, result.output
            return result.stdout

        user = json.loads(aif("report", "--by", "user-country", "--json"))
        factory = json.loads(aif("report", "--by", "factory-country", "--json"))
        table = aif("report", "--by", "funding")
    assert {r["key"] for r in user["rows"]} == {"FI", "PT"}
    assert {r["key"] for r in factory["rows"]} == {"FI", "LU"}
    for name in ("EU: Digital Europe (infrastructure)", "National", "Commercial"):
        assert name in table
    assert "EU: Horizon Europe" in table and "services" in table and "€150,000,000" in table
    assert "161.725" in table  # the Digital Europe GPU-hours


def _factory(db: Database, name: str) -> tuple[int, int]:
    with db.session() as s:
        return s.execute(
            select(Factory.id, Partition.id)
            .join(System, System.factory_id == Factory.id)
            .join(Partition, Partition.system_id == System.id)
            .where(Factory.name == name)
            .order_by(Partition.id)
        ).first()  # type: ignore[return-value]


def test_a_charge_belongs_to_the_factory_its_job_attempt_ran_at(
    db: Database, api: TestClient, admin: Person
) -> None:
    """The rule a federation allocation (no fixed factory) is reported by: a job that failed
    over from LUMI to Meluxina-AI is charged per attempt where each ran, and each part is split
    by that factory's shares; a charge that names no job stays with the allocation."""
    seeded = seed_usage(api, db, admin)
    alloc = seeded.allocations["lumi"]
    (lumi, lumi_part), (melux, melux_part) = _factory(db, "LUMI AIF"), _factory(db, "Meluxina-AI")
    with db.session() as s:
        owner = s.scalars(select(User.id).where(User.username == "anna")).one()
        job = Job(
            name="moved", project_code=seeded.project, owner_id=owner, spec={},
            state="completed", attempt=2, gpus=8, time_limit_s=3600, allocation_id=alloc,
            factory_id=melux, partition_id=melux_part,
        )  # fmt: skip
        s.add(job)
        s.flush()
        for attempt, (factory, part) in enumerate(((lumi, lumi_part), (melux, melux_part)), 1):
            s.add(JobAttempt(job_id=job.id, attempt=attempt, factory_id=factory,
                             partition_id=part, state="completed"))  # fmt: skip
        unrecorded = Job(
            name="no-attempt-row", project_code=seeded.project, owner_id=owner,
            spec={}, state="completed", gpus=1, time_limit_s=60, allocation_id=alloc,
            factory_id=melux, partition_id=melux_part,
        )  # fmt: skip
        s.add(unrecorded)
        s.flush()
        effects = [((job.id, 1), 30_000), ((job.id, 2), 20_000), ((unrecorded.id, 1), 7_000)]
        for effect, milli in effects:
            ledger.reserve(s, alloc, milli, "test", effect)
            ledger.settle(s, alloc, milli, milli, "test", effect)
    with db.session() as s:
        used = where.used_by_factory(s, [alloc], None, None)[alloc]
        sites = where.sites(s)
    # the seeded charge (job 100, no job row) has no factory; the moved job's two attempts
    # are charged where each ran; the job without an attempt row at the job's factory
    assert used == {None: USED["lumi"], lumi: 30_000, melux: 27_000}
    totals = {"granted": 1_000_000, "used": sum(used.values()), "reserved": 0, "remaining": 0}
    own = FundingSplit(Decimal("0.5"), Decimal("0.4"), Decimal("0.1"))
    at_sites = {sites[f] if f else None: m for f, m in used.items()}
    places = where.places(totals, None, own, ResearchKind.OPEN_RD, at_sites)
    by_name = {p.factory: p for p in places}
    assert by_name[where.FEDERATION].hours["used"] == USED["lumi"]
    assert by_name[where.FEDERATION].hours["granted"] == 1_000_000
    assert by_name["Meluxina-AI"].by_source()[DE]["used"] == 13_500
    assert by_name["Meluxina-AI"].by_source()[NATIONAL]["used"] == 8_100  # 0.3 x 27 h
    assert by_name["LUMI AIF"].by_source()[NATIONAL]["used"] == 12_000  # 0.4 x 30 h
    commercial = where.places(totals, None, own, ResearchKind.COMMERCIAL, at_sites)
    assert all(p.by_source()[DE]["used"] == 0 for p in commercial if p.factory != "federation")


def test_a_federation_allocation_is_reported_where_its_hours_were_used(
    db: Database, api: TestClient, admin: Person
) -> None:
    """No fixed factory: its charges go to the factories their jobs ran at, split by those
    factories' shares, in the report and in the usage-over-time series alike."""
    seeded = seed_usage(api, db, admin)
    (lumi, lumi_part), (melux, melux_part) = _factory(db, "LUMI AIF"), _factory(db, "Meluxina-AI")
    with db.session() as s:
        owner = s.scalars(select(User.id).where(User.username == "anna")).one()
        base = s.get_one(Allocation, seeded.allocations["lumi"])
        fed = Allocation(
            project_code=seeded.project, scope="federation", factory_id=None, partition_id=None,
            start_date=base.start_date, end_date=base.end_date, eu_share=Decimal("0.5"),
            national_share=Decimal("0.5"), commercial_share=Decimal(0), status="active",
        )  # fmt: skip
        s.add(fed)
        s.flush()
        ledger.post(s, fed.id, LedgerKind.GRANT, 100_000, "test")
        for factory, part, milli in ((lumi, lumi_part, 40_000), (melux, melux_part, 20_000)):
            job = Job(
                name="anywhere", project_code=seeded.project, owner_id=owner, spec={},
                state="completed", gpus=1, time_limit_s=60, allocation_id=fed.id,
                factory_id=factory, partition_id=part,
            )  # fmt: skip
            s.add(job)
            s.flush()
            ledger.reserve(s, fed.id, milli, "test", (job.id, 1))
            ledger.settle(s, fed.id, milli, milli, "test", (job.id, 1))
    factory = _report(api, admin, "factory")
    assert _milli(factory["LUMI AIF"], "used") == USED["lumi"] + USED["commercial"] + 40_000
    assert _milli(factory["Meluxina-AI"], "used") == USED["meluxina"] + 20_000
    assert _milli(factory[where.FEDERATION], "granted") == 100_000
    assert _milli(factory[where.FEDERATION], "used") == 0
    funding = _report(api, admin, "funding")
    # 40 h at LUMI (0.5/0.4/0.1) and 20 h at Meluxina-AI (0.5/0.3/0.2), not the 0.5/0.5/0
    # the allocation itself carries
    assert _milli(funding[DE], "used") == 161_725 + 20_000 + 10_000
    assert _milli(funding[NATIONAL], "used") == 109_380 + 16_000 + 6_000
    assert _milli(funding[COMMERCIAL], "used") == 62_345 + 4_000 + 4_000
    project = _report(api, seeded.anna, "project")[seeded.project]
    assert project["allocations"] == 3
    assert _milli(project, "used") == USED["lumi"] + USED["meluxina"] + 60_000
    today = datetime.now(UTC).date()
    with db.session() as s:
        principal = principal_of(s.scalars(select(User).where(User.username == "ada")).one())
        series = timeseries.usage_series(s, principal, "funding", today, today)
        by_factory = timeseries.usage_series(s, principal, "factory", today, today)
    assert to_milli(series.totals["national"]) == 109_380 + 16_000 + 6_000
    assert to_milli(by_factory.totals["Meluxina-AI"]) == USED["meluxina"] + 20_000
