"""Usage and remaining budget, grouped by project, factory, country, funding source or mode.

Groups: ``project``; ``factory`` and ``factory-country`` (where the GPU-hours were used: the
allocation's factory, for a federation allocation each charge's; ``report_places``);
``user-country`` (the country of the project's organisation); ``funding`` (each GPU-hour split
by its factory's shares into EU Digital Europe, national and commercial, with the € of every
source beside them: Horizon Europe funds services, never GPU-hours); ``mode`` (access mode).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from sqlalchemy import ColumnElement, Date, FromClause, and_, case, cast, func, select, true
from sqlalchemy.orm import Session

from aifactory.db.models import Allocation, Factory, LedgerDay, LedgerRow, Organisation, Project
from aifactory.domain.enums import LedgerKind, ResearchKind
from aifactory.domain.ledger import FundingSplit, from_milli
from aifactory.errors import Invalid
from aifactory.services import report_places as where
from aifactory.services.access_views import Report, ReportRow
from aifactory.services.permissions import Principal
from aifactory.services.projects import visible_allocations
from aifactory.services.report_places import HOURS, SOURCE_LABELS, Place

Hours = dict[str, int]


@dataclass(frozen=True)
class _Alloc:
    id: int
    project: str
    user_country: str
    mode: str
    totals: Hours
    places: list[Place]


def _single(key: Callable[[_Alloc], str]) -> Callable[[_Alloc], dict[str, Hours]]:
    return lambda a: {key(a): a.totals}


def _by_place(key: Callable[[Place], str]) -> Callable[[_Alloc], dict[str, Hours]]:
    def rows(a: _Alloc) -> dict[str, Hours]:
        out: dict[str, Hours] = {}
        for place in a.places:
            _add(out.setdefault(key(place), dict.fromkeys(HOURS, 0)), place.hours)
        return out

    return rows


def _by_funding(a: _Alloc) -> dict[str, Hours]:
    out: dict[str, Hours] = {}
    for place in a.places:
        for source, hours in place.by_source().items():
            _add(out.setdefault(source, dict.fromkeys(HOURS, 0)), hours)
    return out


def _add(acc: Hours, values: Hours) -> None:
    for name, value in values.items():
        acc[name] += value


GROUPS: dict[str, Callable[[_Alloc], dict[str, Hours]]] = {
    "project": _single(lambda a: a.project),
    "factory": _by_place(lambda p: p.factory),
    "factory-country": _by_place(lambda p: p.country),
    "user-country": _single(lambda a: a.user_country),
    "funding": _by_funding,
    "mode": _single(lambda a: a.mode),
}
_SOURCE_ORDER = {source: i for i, source in enumerate(SOURCE_LABELS)}


def usage_report(
    session: Session, who: Principal, group_by: str, start: date | None, end: date | None
) -> Report:
    """Usage in [start, end] (charges), granted and remaining as of the end of ``end``."""
    if group_by not in GROUPS:
        raise Invalid.field("group_by", "known_group", f"choose one of {', '.join(GROUPS)}")
    if start and end and end < start:
        raise Invalid.field("end", "date_order", f"end {end} is before start {start} (reversed)")
    rows: dict[str, Hours] = {}
    counts: dict[str, int] = {}
    allocations = _allocations(session, who, start, end)
    for alloc in allocations:
        for key, values in GROUPS[group_by](alloc).items():
            _add(rows.setdefault(key, dict.fromkeys(HOURS, 0)), values)
            counts[key] = counts.get(key, 0) + 1
    labels = _labels(session, group_by)
    order = sorted(rows, key=lambda k: (_SOURCE_ORDER.get(k, len(_SOURCE_ORDER)), k))
    total = {f: sum(v[f] for v in rows.values()) for f in HOURS}
    return Report(
        group_by=group_by,
        start=start,
        end=end,
        rows=[_row(k, labels.get(k, k), counts[k], rows[k]) for k in order],
        total=_row("total", "Total", len(allocations), total),
        funding=where.funding_amounts(session) if group_by == "funding" else [],
    )


def _labels(session: Session, group_by: str) -> dict[str, str]:
    labels = {where.FEDERATION: where.FEDERATION_LABEL}
    if group_by == "funding":
        labels |= SOURCE_LABELS
    elif group_by.endswith("country"):
        labels |= where.country_names(session)
    return labels


def _row(key: str, label: str, count: int, values: Hours) -> ReportRow:
    hours = {k: from_milli(v) for k, v in values.items()}
    return ReportRow(key=key, label=label, allocations=count, **hours)


def _allocations(
    session: Session, who: Principal, start: date | None, end: date | None
) -> list[_Alloc]:
    """One line per visible allocation: totals now from its running totals, or, for a date
    range, summed from the ledger entries in that range (only then is the ledger scanned);
    a federation allocation's charges are also read per factory of use."""
    query = (
        select(
            Allocation, Project.mode, Organisation.country_code, Factory.name, Factory.country_code
        )
        .join(Project, Project.code == Allocation.project_code)
        .join(Organisation, Organisation.id == Project.organisation_id)
        .outerjoin(Factory, Factory.id == Allocation.factory_id)
        .where(Allocation.id.in_(visible_allocations(who)))
    )
    rows = session.execute(query).all()
    totals = (
        _ranged_totals(session, [a.id for a, *_ in rows], start, end)
        if start or end
        else {a.id: _running_totals(a) for a, *_ in rows}
    )
    roaming = [a.id for a, *_ in rows if a.factory_id is None]
    used_at = where.used_by_factory(session, roaming, start, end)
    factories = where.sites(session) if roaming else {}
    kinds = where.research_kinds(session, roaming) if roaming else {}
    out = []
    for a, mode, country, fname, fcountry in rows:
        mine = totals.get(a.id, dict.fromkeys(HOURS, 0))
        split = FundingSplit(a.eu_share, a.national_share, a.commercial_share)
        site = where.Site(fname, fcountry, split) if a.factory_id is not None else None
        at = {factories.get(f) if f else None: m for f, m in used_at.get(a.id, {}).items()}
        kind = kinds.get(a.id, ResearchKind.OPEN_RD)
        places = where.places(mine, site, split, kind, at)
        out.append(_Alloc(a.id, a.project_code, country, mode, mine, places))
    return out


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
    """The report as CSV: one row per group and a total row, hours in GPU-hours, then how the
    key reads (``label``). By funding source, also each source's € (``funding_eur``) and a
    row for each source that funds no GPU-hours (Horizon Europe: services), hours empty."""
    out = io.StringIO()
    writer = csv.writer(out)
    hours = ["allocations", "granted", "used", "reserved", "remaining"]
    by_funding = report.group_by == "funding"
    euros = {f.source: f.amount_eur for f in report.funding}
    writer.writerow([report.group_by, *hours, "label", *(["funding_eur"] if by_funding else [])])
    for row in [*report.rows, report.total]:
        cells = [row.key, row.allocations, row.granted, row.used, row.reserved, row.remaining]
        writer.writerow([*cells, row.label, *([euros.get(row.key, "")] if by_funding else [])])
    for line in report.funding:
        if line.funds != "gpu_hours":
            writer.writerow([line.source, *[""] * len(hours), line.label, line.amount_eur])
    return out.getvalue()
