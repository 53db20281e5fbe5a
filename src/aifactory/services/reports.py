"""Usage and remaining budget, grouped by project, factory, country, funding source or mode."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, date, datetime, time
from decimal import Decimal

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Date, FromClause, and_, case, cast, func, select, true
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Factory,
    LedgerDay,
    LedgerRow,
    Organisation,
    Project,
)
from aifactory.domain.enums import LedgerKind
from aifactory.domain.ledger import FundingSplit, attribute, from_milli
from aifactory.errors import Invalid
from aifactory.services.access_views import Report, ReportRow
from aifactory.services.permissions import Principal
from aifactory.services.projects import visible_allocations


class _Alloc(BaseModel):
    id: int
    project: str
    factory: str
    country: str
    mode: str
    split: dict[str, Decimal]
    granted: int
    used: int
    reserved: int
    remaining: int


def _single(key: Callable[[_Alloc], str]) -> Callable[[_Alloc], dict[str, dict[str, int]]]:
    def rows(a: _Alloc) -> dict[str, dict[str, int]]:
        fields = ("granted", "used", "reserved", "remaining")
        return {key(a): {f: getattr(a, f) for f in fields}}

    return rows


def _by_funding(a: _Alloc) -> dict[str, dict[str, int]]:
    split = FundingSplit(a.split["eu"], a.split["national"], a.split["commercial"])
    parts = {
        f: attribute(getattr(a, f), split) for f in ("granted", "used", "reserved", "remaining")
    }
    return {
        source: {f: parts[f][source] for f in parts} for source in ("eu", "national", "commercial")
    }


GROUPS: dict[str, Callable[[_Alloc], dict[str, dict[str, int]]]] = {
    "project": _single(lambda a: a.project),
    "factory": _single(lambda a: a.factory),
    "country": _single(lambda a: a.country),
    "mode": _single(lambda a: a.mode),
    "funding": _by_funding,
}


def usage_report(
    session: Session, who: Principal, group_by: str, start: date | None, end: date | None
) -> Report:
    """Usage in [start, end] (charges), granted and remaining as of the end of ``end``."""
    if group_by not in GROUPS:
        raise Invalid.field("group_by", "known_group", f"choose one of {', '.join(GROUPS)}")
    if start and end and end < start:
        raise Invalid.field("end", "date_order", f"end {end} is before start {start} (reversed)")
    rows: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    allocations = _allocations(session, who, start, end)
    for alloc in allocations:
        for key, values in GROUPS[group_by](alloc).items():
            acc = rows.setdefault(key, dict.fromkeys(values, 0))
            for field, value in values.items():
                acc[field] += value
            counts[key] = counts.get(key, 0) + 1
    out = [_row(k, counts[k], v) for k, v in sorted(rows.items())]
    total = {
        f: sum(v[f] for v in rows.values()) for f in ("granted", "used", "reserved", "remaining")
    }
    return Report(
        group_by=group_by,
        start=start,
        end=end,
        rows=out,
        total=_row("total", len(allocations), total),
    )


def _row(key: str, count: int, values: dict[str, int]) -> ReportRow:
    return ReportRow(key=key, allocations=count, **{k: from_milli(v) for k, v in values.items()})


def _allocations(
    session: Session, who: Principal, start: date | None, end: date | None
) -> list[_Alloc]:
    """One line per visible allocation: totals now from its running totals, or, for a date
    range, summed from the ledger entries in that range (only then is the ledger scanned)."""
    query = (
        select(Allocation, Project.mode, Factory.name, Organisation.country_code)
        .join(Project, Project.code == Allocation.project_code)
        .join(Factory, Factory.id == Allocation.factory_id)
        .join(Organisation, Organisation.id == Project.organisation_id)
        .where(Allocation.id.in_(visible_allocations(who)))
    )
    rows = session.execute(query).all()
    totals = (
        _ranged_totals(session, [a.id for a, *_ in rows], start, end)
        if start or end
        else {a.id: _running_totals(a) for a, *_ in rows}
    )
    return [
        _Alloc(
            id=a.id,
            project=a.project_code,
            factory=fname,
            country=country,
            mode=mode,
            split={
                "eu": a.eu_share,
                "national": a.national_share,
                "commercial": a.commercial_share,
            },
            **totals.get(a.id, dict.fromkeys(("granted", "used", "reserved", "remaining"), 0)),
        )
        for a, mode, fname, country in rows
    ]


def _running_totals(a: Allocation) -> dict[str, int]:
    remaining = a.granted_milli - a.used_milli - a.reserved_milli - a.expired_milli
    return {"granted": a.granted_milli, "used": a.used_milli, "reserved": a.reserved_milli,
            "remaining": remaining}  # fmt: skip


def _ranged_totals(
    session: Session, ids: list[int], start: date | None, end: date | None
) -> dict[int, dict[str, int]]:
    """Totals for a date range from the per-day sums (``ledger_days``), not the entries.

    A range is whole UTC days (``start`` 00:00 to ``end`` 23:59:59.999999), so an entry falls
    in it exactly when its UTC day does: the day sums give the entries' totals to the
    milli-GPU-hour (``ranged_totals_from_entries`` is the same report read from the entries).
    """
    in_time = LedgerDay.day <= end if end else true()
    in_range = LedgerDay.day >= start if start else true()
    return _totals(session, LedgerDay.__table__, ids, in_time, in_range)


def ranged_totals_from_entries(
    session: Session, ids: list[int], start: date | None, end: date | None
) -> dict[int, dict[str, int]]:
    """``_ranged_totals`` summed from every ledger entry: the reference the day sums are
    checked against (tests, ``audit_days``, the benchmark's before figure)."""
    until = datetime.combine(end, time.max, UTC) if end else None
    since = datetime.combine(start, time.min, UTC) if start else None
    in_time = LedgerRow.at <= until if until else true()
    in_range = LedgerRow.at >= since if since else true()
    return _totals(session, LedgerRow.__table__, ids, in_time, in_range)


def _totals(
    session: Session,
    table: FromClause,
    ids: list[int],
    in_time: ColumnElement[bool],
    in_range: ColumnElement[bool],
) -> dict[int, dict[str, int]]:
    """Granted, reserved and remaining as of the end of the range (``in_time``); used
    (charges) only within it (``in_range``), per allocation of ``ids``."""
    kind, amount = table.c.kind, table.c.amount_milli

    def total(
        kinds: tuple[LedgerKind, ...], condition: ColumnElement[bool] | None = None
    ) -> ColumnElement[int]:
        cond = and_(kind.in_(kinds), condition if condition is not None else true())
        return func.coalesce(func.sum(case((cond, amount), else_=0)), 0)

    query = (
        select(
            table.c.allocation_id,
            total((LedgerKind.GRANT, LedgerKind.ADJUST)),
            total((LedgerKind.CHARGE,), in_range),
            total((LedgerKind.RESERVE, LedgerKind.RELEASE)),
            func.coalesce(func.sum(amount), 0),
        )
        .where(table.c.allocation_id.in_(ids), in_time)
        .group_by(table.c.allocation_id)
    )
    return {
        aid: {"granted": int(g), "used": -int(u), "reserved": -int(r), "remaining": int(b)}
        for aid, g, u, r, b in session.execute(query)
    }


def audit_days(session: Session) -> list[str]:
    """Every (allocation, day, kind) whose sum or count differs from its ledger entries; an
    empty list means the day sums are exact. Reads the whole ledger (an audit, not a report)."""
    day = func.date(LedgerRow.at) if _is_sqlite(session) else cast(LedgerRow.at, Date)
    entries = {
        (a, str(d), k): (int(s), n)
        for a, d, k, s, n in session.execute(
            select(
                LedgerRow.allocation_id,
                day,
                LedgerRow.kind,
                func.sum(LedgerRow.amount_milli),
                func.count(),
            ).group_by(LedgerRow.allocation_id, day, LedgerRow.kind)
        )
    }
    days = {
        (d.allocation_id, d.day.isoformat(), d.kind): (d.amount_milli, d.entries)
        for d in session.scalars(select(LedgerDay))
    }
    return [
        f"allocation {key[0]} {key[1]} {key[2]}: days hold {days.get(key)}, "
        f"entries sum to {entries.get(key)} (amount, entries)"
        for key in sorted(entries.keys() | days.keys())
        if entries.get(key) != days.get(key)
    ]


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def to_csv(report: Report) -> str:
    """The report as CSV: one row per group and a total row, hours in GPU-hours."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([report.group_by, "allocations", "granted", "used", "reserved", "remaining"])
    for row in [*report.rows, report.total]:
        writer.writerow(
            [row.key, row.allocations, row.granted, row.used, row.reserved, row.remaining]
        )
    return out.getvalue()
