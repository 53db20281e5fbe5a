"""Usage over time from the per-day sums: exact buckets by project, factory and funding source,
weeks from Monday, only the allocations a person may see, capacity per factory; both backends."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.db.models import (
    Allocation,
    Factory,
    LedgerRow,
    Organisation,
    Partition,
    Project,
    ProjectMember,
    Proposal,
    System,
    User,
)
from aifactory.domain.enums import Role
from aifactory.errors import Invalid
from aifactory.services import timeseries
from aifactory.services.permissions import Principal

MON = date(2026, 10, 5)  # a Monday
D = Decimal


def _allocation(
    s: Session, code: str, factory: int, partition: int, user: int, split: tuple[str, ...]
) -> int:
    org = s.scalar(select(Organisation.id).where(Organisation.name == "Series Org"))
    p = Proposal(call_id="c", mode="PG", organisation_id=org, applicant_id=user, title="t",
                 research_kind="open_rd", status="accepted")  # fmt: skip
    s.add(p)
    s.flush()
    members = [ProjectMember(user_id=user, role=Role.PI)] if code == "SER-A" else []
    s.add(Project(code=code, proposal_id=p.id, title="t", mode="PG", organisation_id=org,
                  factory_id=factory, members=members))  # fmt: skip
    s.flush()
    eu, national, commercial = (D(v) for v in split)
    a = Allocation(project_code=code, factory_id=factory, partition_id=partition,
                   start_date=MON, end_date=MON + timedelta(days=60), eu_share=eu,
                   national_share=national, commercial_share=commercial)  # fmt: skip
    s.add(a)
    s.flush()
    return a.id


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@pytest.fixture
def ledger(db: Database) -> dict[str, object]:
    """Two allocations on two factories; charges at known days (one at 23:59, one at 00:00)."""
    with db.session() as s:
        s.add(Organisation(name="Series Org", type="startup", country_code="FI"))
        user = User(username="sam", email="sam@example.eu")
        s.add(user)
        s.flush()
        pools = s.execute(
            select(Factory.id, Factory.name, func.min(Partition.id))
            .join(System, System.factory_id == Factory.id)
            .join(Partition, Partition.system_id == System.id)
            .group_by(Factory.id, Factory.name)
            .order_by(Factory.id)
        ).all()[:2]
        a = _allocation(s, "SER-A", pools[0][0], pools[0][2], user.id, ("0.5", "0.5", "0"))
        b = _allocation(s, "SER-B", pools[1][0], pools[1][2], user.id, ("0", "0", "1"))
        rows = [
            (a, "grant", 1_000_000, _at(MON, 8)),
            (b, "grant", 1_000_000, _at(MON, 8)),
            (a, "charge", -1_500, _at(MON, 9)),  # 1.5 GPU-h on Monday
            (a, "charge", -2_000, _at(MON, 23, 59)),  # and 2 more, still Monday
            (a, "charge", -4_000, _at(MON + timedelta(days=1), 0)),  # Tuesday
            (b, "charge", -10_000, _at(MON + timedelta(days=2), 12)),  # Wednesday
            (b, "charge", -7_000, _at(MON + timedelta(days=7), 12)),  # next Monday
            (a, "reserve", -50_000, _at(MON + timedelta(days=2), 12)),  # not a charge
            (a, "charge", -9_000, _at(MON - timedelta(days=1), 12)),  # before the range
        ]
        s.execute(
            insert(LedgerRow),
            [
                {
                    "allocation_id": i,
                    "kind": k,
                    "amount_milli": m,
                    "at": t,
                    "actor": "test",
                    "note": "",
                }
                for i, k, m, t in rows
            ],
        )
        admin = Principal(user.id + 1000, "boss", frozenset({(Role.FEDERATION_ADMIN, None)}))
        member = Principal(user.id, "sam", frozenset())
    return {"admin": admin, "member": member, "factories": [p[1] for p in pools]}


def test_buckets_hold_the_exact_charges_by_project_factory_and_funding(
    db: Database, ledger: dict[str, object]
) -> None:
    first, second = ledger["factories"]  # type: ignore[misc]
    admin, end = ledger["admin"], MON + timedelta(days=8)
    with db.session() as s:
        days = timeseries.usage_series(s, admin, "project", MON, MON + timedelta(days=7))
        weeks = timeseries.usage_series(s, admin, "factory", MON, end, "week")
        funding = timeseries.usage_series(s, admin, "funding", MON, end)
        mine = timeseries.usage_series(s, ledger["member"], "project", MON, end)
    assert days.buckets == [MON + timedelta(days=i) for i in range(8)]
    assert days.values["SER-A"][:3] == [D("3.5"), D(4), D(0)]  # 23:59 Monday, 00:00 Tuesday
    assert days.values["SER-B"][:3] == [D(0), D(0), D(10)] and days.values["SER-B"][7] == D(7)
    assert days.totals == {"SER-A": D("7.5"), "SER-B": D(17)}  # not the reserve, not Sunday's
    assert weeks.buckets == [MON, MON + timedelta(days=7)]  # weeks from Monday
    assert weeks.values == {first: [D("7.5"), D(0)], second: [D(10), D(7)]}
    assert funding.values["eu"][:2] == [D("1.75"), D(2)]
    assert funding.values["national"][:2] == [D("1.75"), D(2)]
    assert funding.values["commercial"][2] == D(10)
    assert sum(funding.totals.values()) == D("24.5")
    assert mine.totals == {"SER-A": D("7.5")}  # a member sees only their project's charges


def test_capacity_counts_gpus_in_service_and_bad_ranges_name_the_field(
    db: Database, ledger: dict[str, object]
) -> None:
    first = ledger["factories"][0]  # type: ignore[index]
    with db.session() as s:
        rows = timeseries.capacity_series(s, ledger["admin"], MON, MON + timedelta(days=1))
        gpus = s.scalar(
            select(func.sum(Partition.nodes * Partition.gpus_per_node))
            .join(System, System.id == Partition.system_id)
            .join(Factory, Factory.id == System.factory_id)
            .where(Factory.name == first)
            .where((System.deployment_year <= 2026) | System.deployment_year.is_(None))
        )
        row = next(r for r in rows if r.factory == first)
        assert row.gpus == [gpus, gpus] and row.used == [D("3.5"), D(4)]
        assert row.utilisation[1] == pytest.approx(4 / (gpus * 24))
        bad = [
            ("country", "day", MON, MON, "group_by"),
            ("project", "month", MON, MON, "bucket"),
            ("project", "day", MON, MON - timedelta(days=1), "end"),
            ("project", "day", MON - timedelta(days=400), MON, "start"),
        ]
        for group, bucket, start, end, field in bad:
            with pytest.raises(Invalid) as caught:
                timeseries.usage_series(s, ledger["admin"], group, start, end, bucket)
            assert caught.value.details[0].field == field
