"""Dated usage reports read per-day sums kept by triggers; they must equal a scan of the entries.

Randomised ledgers (several allocations, factories, countries, modes and funding splits; entries
at midnight, at the last microsecond of a day and anywhere between), every group, principal and
range, compared with the same report summed from the entries themselves, also after entries are
inserted in bulk, moved to other days, changed and deleted (the triggers' other paths).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from alembic import command
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.db.models import (
    Allocation,
    Factory,
    LedgerDay,
    LedgerRow,
    Organisation,
    Partition,
    Project,
    ProjectMember,
    Proposal,
    System,
    User,
)
from aifactory.domain.enums import LedgerKind, Role
from aifactory.services import ledger, reports
from aifactory.services.access_views import Report
from aifactory.services.permissions import Principal

DAY0 = date(2026, 10, 1)
DAYS = 40
KINDS = [k.value for k in LedgerKind]
SPLITS = [("0.5", "0.5", "0"), ("0.33333", "0.33333", "0.33334"), ("0", "0", "1")]


def _user(s: Session, name: str) -> int:
    user = User(username=name, email=f"{name}@example.eu")
    s.add(user)
    s.flush()
    return user.id


def _allocations(s: Session, rng: random.Random, member: int, n: int = 6) -> list[int]:
    """``n`` projects with one allocation each over the seeded factories; the member is in
    every other one."""
    orgs = []
    for i, country in enumerate(("FI", "PT", "DE")):
        org = Organisation(name=f"Org {i}", type="startup", country_code=country)
        s.add(org)
        orgs.append(org)
    s.flush()
    pools = s.execute(
        select(Factory.id, func.min(Partition.id))
        .join(System, System.factory_id == Factory.id)
        .join(Partition, Partition.system_id == System.id)
        .group_by(Factory.id)
    ).all()
    ids = []
    for i in range(n):
        factory_id, partition_id = pools[i % len(pools)]
        mode = rng.choice(("PG", "IN", "SC"))
        p = Proposal(
            call_id="c",
            mode=mode,
            organisation_id=orgs[i % 3].id,
            applicant_id=member,
            title="t",
            research_kind="open_rd",
            status="accepted",
        )
        s.add(p)
        s.flush()
        code = f"ROLLUP-{i:02d}"
        members = [ProjectMember(user_id=member, role=Role.PI)] if i % 2 == 0 else []
        s.add(
            Project(
                code=code,
                proposal_id=p.id,
                title="t",
                mode=mode,
                organisation_id=orgs[i % 3].id,
                factory_id=factory_id,
                members=members,
            )
        )
        s.flush()
        eu, national, commercial = (Decimal(v) for v in SPLITS[i % len(SPLITS)])
        a = Allocation(
            project_code=code,
            factory_id=factory_id,
            partition_id=partition_id,
            start_date=DAY0,
            end_date=DAY0 + timedelta(days=365),
            eu_share=eu,
            national_share=national,
            commercial_share=commercial,
        )
        s.add(a)
        s.flush()
        ids.append(a.id)
    return ids


def _moment(rng: random.Random) -> datetime:
    """Anywhere in the window, with day edges (midnight, last microsecond) often."""
    day = datetime.combine(DAY0 + timedelta(days=rng.randrange(DAYS)), datetime.min.time(), UTC)
    edge = rng.random()
    if edge < 0.2:
        return day
    if edge < 0.4:
        return day + timedelta(days=1, microseconds=-1)
    return day + timedelta(microseconds=rng.randrange(86_400_000_000))


def _entries(rng: random.Random, allocations: list[int], n: int) -> list[dict[str, object]]:
    rows = []
    for _ in range(n):
        kind = rng.choice(KINDS)
        amount = rng.randrange(1, 10_000_000) * (1 if kind in ("grant", "release") else -1)
        if kind == "adjust":
            amount *= rng.choice((1, -1))
        rows.append(
            {
                "allocation_id": rng.choice(allocations),
                "kind": kind,
                "amount_milli": amount,
                "at": _moment(rng),
                "actor": "test",
                "note": "",
            }
        )
    return rows


def _ranges(rng: random.Random) -> Iterator[tuple[date | None, date | None]]:
    yield None, None
    edges = [DAY0 - timedelta(days=1), DAY0, DAY0 + timedelta(days=DAYS)]
    edges += [DAY0 + timedelta(days=rng.randrange(DAYS)) for _ in range(4)]
    for _ in range(8):
        start, end = sorted(rng.sample(edges, 2))
        yield rng.choice((start, None)), rng.choice((end, None, start))


def _report_from_entries(
    s: Session, who: Principal, group: str, start: date | None, end: date | None
) -> Report:
    original = reports._ranged_totals
    reports._ranged_totals = reports.ranged_totals_from_entries
    try:
        return reports.usage_report(s, who, group, start, end)
    finally:
        reports._ranged_totals = original


def _check_every_report(db: Database, rng: random.Random, people: list[Principal]) -> int:
    compared = 0
    with db.session() as s:
        assert reports.audit_days(s) == []
        for start, end in _ranges(rng):
            for who in people:
                for group in reports.GROUPS:
                    fast = reports.usage_report(s, who, group, start, end)
                    if start or end:  # without a range neither reads the ledger
                        assert fast == _report_from_entries(s, who, group, start, end), (
                            f"{who.username} by {group} from {start} to {end}"
                        )
                        compared += 1
    return compared


@pytest.fixture
def people(db: Database) -> list[Principal]:
    with db.session() as s:
        admin, member, operator = (_user(s, n) for n in ("roll-admin", "roll-member", "roll-op"))
        factory = s.scalar(select(func.min(Factory.id)))
    return [
        Principal(admin, "roll-admin", frozenset({(Role.FEDERATION_ADMIN, None)})),
        Principal(member, "roll-member", frozenset()),
        Principal(operator, "roll-op", frozenset({(Role.FACTORY_OPERATOR, factory)})),
    ]


@pytest.mark.parametrize("seed", [1, 2])
def test_dated_reports_equal_a_scan_of_the_entries(
    db: Database, people: list[Principal], seed: int
) -> None:
    rng = random.Random(seed)
    with db.session() as s:
        allocations = _allocations(s, rng, people[1].user_id)
        for row in _entries(rng, allocations, 300):  # one statement per entry
            s.execute(insert(LedgerRow).values(**row))
    assert _check_every_report(db, rng, people) > 0
    with db.session() as s:  # one multi-row statement (PostgreSQL: one transition table)
        s.execute(insert(LedgerRow), _entries(rng, allocations, 400))
        s.execute(insert(LedgerRow).values(_entries(rng, allocations, 50)))
    _check_every_report(db, rng, people)
    with db.session() as s:  # entries moved across days, changed, deleted
        ids = list(s.scalars(select(LedgerRow.id)))
        for entry_id in rng.sample(ids, 40):
            s.execute(update(LedgerRow).where(LedgerRow.id == entry_id).values(at=_moment(rng)))
        s.execute(
            update(LedgerRow)
            .where(LedgerRow.id.in_(rng.sample(ids, 60)))
            .values(amount_milli=LedgerRow.amount_milli * 2, kind="charge")
        )
        s.execute(delete(LedgerRow).where(LedgerRow.id.in_(rng.sample(ids, 80))))
    _check_every_report(db, rng, people)
    with db.session() as s:  # every entry of a day gone: its sums go too
        s.execute(delete(LedgerRow).where(LedgerRow.allocation_id == allocations[0]))
        assert s.scalar(select(func.count()).where(LedgerDay.allocation_id == allocations[0])) == 0
    _check_every_report(db, rng, people)


def test_the_ledger_service_keeps_the_day_sums(db: Database, people: list[Principal]) -> None:
    rng = random.Random(3)
    with db.session() as s:
        allocation = _allocations(s, rng, people[1].user_id, n=1)[0]
        ledger.post(s, allocation, LedgerKind.GRANT, 1_000_000, "test")
        for job in range(1, 20):
            ledger.reserve(s, allocation, 3_000, "test", (job, 1))
            ledger.settle(s, allocation, 3_000, rng.randrange(0, 3_000), "test", (job, 1))
    with db.session() as s:
        assert reports.audit_days(s) == []
        today = datetime.now(UTC).date()
        fast = reports.usage_report(s, people[0], "project", today, today)
        assert fast == _report_from_entries(s, people[0], "project", today, today)
        assert (
            fast.total.used == reports.usage_report(s, people[0], "project", None, None).total.used
        )


def test_the_migration_sums_the_entries_already_there(
    db: Database, people: list[Principal]
) -> None:
    rng = random.Random(4)
    with db.session() as s:
        allocations = _allocations(s, rng, people[1].user_id)
        s.execute(insert(LedgerRow), _entries(rng, allocations, 500))
    db.migrate(command.downgrade, "0008")
    db.upgrade()  # creates the table again and sums the 500 entries into it
    with db.session() as s:
        assert s.scalar(select(func.sum(LedgerDay.entries))) == 500
    _check_every_report(db, rng, people)
