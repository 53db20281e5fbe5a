"""Usage over time: GPU-hours charged per day (or week) by project, factory or funding source,
and each factory's capacity next to its use.

Read from the per-day sums (``ledger_days``), so a series is one grouped query whatever the
length of the ledger; the day is a plain ``DATE`` column, the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.db.models import Allocation, Factory, LedgerDay, Partition, System
from aifactory.domain.enums import LedgerKind, ResearchKind
from aifactory.domain.ledger import FundingSplit, attribute, from_milli
from aifactory.errors import Invalid
from aifactory.services import report_places as where
from aifactory.services.permissions import Principal
from aifactory.services.projects import visible_allocations

GROUPS = ("project", "factory", "funding")
BUCKETS = ("day", "week")
MAX_DAYS = 366


class UsageSeries(BaseModel):
    """GPU-hours charged per bucket; ``values[key][i]`` belongs to ``buckets[i]``."""

    group_by: str
    bucket: str
    start: date
    end: date
    buckets: list[date]
    values: dict[str, list[Decimal]]
    totals: dict[str, Decimal]


class CapacitySeries(BaseModel):
    """One factory per day: GPUs in service, GPU-hours it could deliver, GPU-hours charged."""

    factory: str
    days: list[date]
    gpus: list[int]
    used: list[Decimal]

    @property
    def utilisation(self) -> list[float]:
        return [
            float(u) / (g * 24) if g else 0.0 for u, g in zip(self.used, self.gpus, strict=True)
        ]


def check_range(start: date, end: date) -> None:
    """A series spans 1 to ``MAX_DAYS`` whole UTC days."""
    if end < start:
        raise Invalid.field("end", "date_order", f"end {end} is before start {start} (reversed)")
    if (end - start).days + 1 > MAX_DAYS:
        raise Invalid.field("start", "max_span", f"a series spans at most {MAX_DAYS} days")


def _buckets(start: date, end: date, bucket: str) -> list[date]:
    first = start - timedelta(days=start.weekday()) if bucket == "week" else start
    step = 7 if bucket == "week" else 1
    return [first + timedelta(days=i) for i in range(0, (end - first).days + 1, step)]


def _bucket_of(day: date, bucket: str) -> date:
    return day - timedelta(days=day.weekday()) if bucket == "week" else day


def _charges(
    session: Session, who: Principal, start: date, end: date
) -> list[tuple[Allocation, date, int | None, int]]:
    """(allocation, day, factory of use, GPU-hours charged that day in milli) for the visible
    allocations; a federation allocation's (no fixed factory) per factory where each charge's
    job ran (``report_places``), the others' at their factory."""
    used = -func.sum(LedgerDay.amount_milli)
    query = (
        select(Allocation, LedgerDay.day, used)
        .join(Allocation, Allocation.id == LedgerDay.allocation_id)
        .where(
            LedgerDay.kind == LedgerKind.CHARGE,
            LedgerDay.day >= start,
            LedgerDay.day <= end,
            LedgerDay.allocation_id.in_(visible_allocations(who)),
        )
        .group_by(Allocation.id, LedgerDay.day)
    )
    rows = [(a, d, a.factory_id, int(milli)) for a, d, milli in session.execute(query)]
    roaming = {a.id: a for a, *_ in rows if a.factory_id is None}
    if not roaming:
        return rows
    daily = where.daily_used_by_factory(session, roaming, start, end)
    fixed = [row for row in rows if row[0].factory_id is not None]
    return fixed + [(roaming[aid], day, fid, milli) for aid, day, fid, milli in daily]


Keyer = Callable[[Allocation, int | None, int], dict[str, int]]


def _keyer(session: Session, group_by: str, roaming: list[int]) -> Keyer:
    if group_by == "project":
        return lambda a, _f, milli: {a.project_code: milli}
    sites = where.sites(session)
    if group_by == "factory":
        return lambda a, f, milli: {sites[f].name if f else where.FEDERATION: milli}
    kinds = where.research_kinds(session, roaming)

    def by_funding(a: Allocation, f: int | None, milli: int) -> dict[str, int]:
        own = FundingSplit(a.eu_share, a.national_share, a.commercial_share)
        kind = kinds.get(a.id, ResearchKind.OPEN_RD)
        split = where.split_at(own, kind, sites.get(f) if f else None, a.factory_id is not None)
        return attribute(milli, split)

    return by_funding


def usage_series(
    session: Session,
    who: Principal,
    group_by: str,
    start: date,
    end: date,
    bucket: str = "day",
) -> UsageSeries:
    """GPU-hours charged per day (or ISO week, from its Monday) in [start, end], by group.

    Only allocations this user may see count (``visible_allocations``); the funding split
    attributes each day's charge with the allocation's EU / national / commercial shares (a
    federation allocation's: those of the factory where it was used, as the usage report).
    """
    if group_by not in GROUPS:
        raise Invalid.field("group_by", "known_group", f"choose one of {', '.join(GROUPS)}")
    if bucket not in BUCKETS:
        raise Invalid.field("bucket", "known_bucket", f"choose one of {', '.join(BUCKETS)}")
    check_range(start, end)
    buckets = _buckets(start, end, bucket)
    index = {b: i for i, b in enumerate(buckets)}
    charges = _charges(session, who, start, end)
    key_of = _keyer(session, group_by, [a.id for a, *_ in charges if a.factory_id is None])
    milli: dict[str, list[int]] = {}
    for alloc, day, factory, amount in charges:
        for key, part in key_of(alloc, factory, amount).items():
            milli.setdefault(key, [0] * len(buckets))[index[_bucket_of(day, bucket)]] += part
    values = {k: [from_milli(v) for v in vs] for k, vs in sorted(milli.items())}
    return UsageSeries(
        group_by=group_by,
        bucket=bucket,
        start=start,
        end=end,
        buckets=buckets,
        values=values,
        totals={k: from_milli(sum(vs)) for k, vs in sorted(milli.items())},
    )


def _gpus_in_service(session: Session) -> dict[str, list[tuple[int | None, int]]]:
    """Per factory: (deployment year or None, GPUs) for each of its systems."""
    query = (
        select(
            Factory.name,
            System.deployment_year,
            func.sum(Partition.nodes * Partition.gpus_per_node),
        )
        .join(System, System.factory_id == Factory.id)
        .join(Partition, Partition.system_id == System.id)
        .group_by(Factory.name, System.id, System.deployment_year)
    )
    out: dict[str, list[tuple[int | None, int]]] = {}
    for name, year, gpus in session.execute(query):
        out.setdefault(name, []).append((year, int(gpus or 0)))
    return out


def capacity_series(
    session: Session, who: Principal, start: date, end: date
) -> list[CapacitySeries]:
    """Per factory and day: GPUs in service (systems count from 1 January of their
    deployment year) and the GPU-hours charged on the allocations this user may see."""
    check_range(start, end)
    days = _buckets(start, end, "day")
    used = usage_series(session, who, "factory", start, end).values
    systems = _gpus_in_service(session)
    return [
        CapacitySeries(
            factory=name,
            days=days,
            gpus=[sum(g for y, g in parts if y is None or y <= d.year) for d in days],
            used=used.get(name, [Decimal(0)] * len(days)),
        )
        for name, parts in sorted(systems.items())
    ]
