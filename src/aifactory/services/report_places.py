"""Where an allocation's GPU-hours were used, and which funding sources they are attributed to.

An allocation on a partition has its factory, and every job it pays for ran there: its hours
belong to that factory and are split by the shares the allocation took from the factory at
award (``attribution_for``: the factory's capacity split for open R&D, all commercial for
commercial work). An allocation with no fixed factory (a federation allocation: ``factory_id``
NULL) pays for jobs at several factories: each charge belongs to the factory where the job
attempt it settles ran (the attempt's factory; the job's when the attempt left no row), and is
split by that factory's shares; a charge that names no job stays with the allocation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

from sqlalchemy import ColumnElement, Date, and_, cast, func, select, true
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    Country,
    Factory,
    FundingLine,
    Job,
    JobAttempt,
    LedgerRow,
    Project,
    Proposal,
)
from aifactory.domain.enums import LedgerKind, ResearchKind
from aifactory.domain.ledger import FundingSplit, attribute, attribution_for
from aifactory.domain.registry import FundingSource
from aifactory.services.access_views import FundingAmount

HOURS = ("granted", "used", "reserved", "remaining")
#: The row of a federation allocation's grant and balance (they belong to no one factory).
FEDERATION = "federation"
FEDERATION_LABEL = "federation allocation (any factory)"
#: The sources as the founding announcement names them, in report order.
SOURCE_LABELS: dict[str, str] = {
    FundingSource.DIGITAL_EUROPE: "EU: Digital Europe (infrastructure)",
    FundingSource.NATIONAL: "National",
    FundingSource.COMMERCIAL: "Commercial",
    FundingSource.HORIZON_EUROPE: "EU: Horizon Europe (services)",
}
#: Which source each share of a funding split is: the EU share of GPU-hours is Digital Europe
#: (AI infrastructure); Horizon Europe funds the factories' services and never takes GPU-hours.
SHARE_SOURCES: dict[str, str] = {
    "eu": FundingSource.DIGITAL_EUROPE,
    "national": FundingSource.NATIONAL,
    "commercial": FundingSource.COMMERCIAL,
}
#: What each source's money pays for (sources not named here: GPU-hours).
FUNDS: dict[str, str] = {FundingSource.HORIZON_EUROPE: "services"}


@dataclass(frozen=True)
class Site:
    """A factory as reports read it: name, country and capacity split."""

    name: str
    country: str
    split: FundingSplit


@dataclass
class Place:
    """Hours of one allocation that belong to one factory (or to ``FEDERATION``)."""

    factory: str
    country: str
    split: FundingSplit
    hours: dict[str, int] = field(default_factory=lambda: dict.fromkeys(HOURS, 0))

    def by_source(self) -> dict[str, dict[str, int]]:
        """The hours split by funding source (parts sum exactly to the hours)."""
        parts = {f: attribute(self.hours[f], self.split) for f in HOURS}
        return {
            source: {f: parts[f][share] for f in HOURS} for share, source in SHARE_SOURCES.items()
        }


def sites(session: Session) -> dict[int, Site]:
    """Every factory by id (a small table: read whole)."""
    rows = session.execute(
        select(
            Factory.id,
            Factory.name,
            Factory.country_code,
            Factory.eu_share,
            Factory.national_share,
            Factory.commercial_share,
        )
    )
    return {
        fid: Site(name, country, FundingSplit(*(Decimal(str(v)) for v in (eu, nat, com))))
        for fid, name, country, eu, nat, com in rows
    }


def places(
    totals: dict[str, int],
    factory: Site | None,
    split: FundingSplit,
    kind: ResearchKind,
    used_at: dict[Site | None, int],
) -> list[Place]:
    """An allocation's hours by the factory they belong to.

    Args:
        totals: the allocation's granted, used, reserved and remaining hours (milli).
        factory: its factory, or None for a federation allocation.
        split: its own funding shares (from its factory at award).
        kind: its project's research kind (commercial work is all commercial anywhere).
        used_at: for a federation allocation, the hours charged per factory of use (None: a
            charge that names no job).
    """
    if factory is not None:
        return [Place(factory.name, factory.country, split, dict(totals))]
    placed = [
        Place(site.name, site.country, split_at(split, kind, site, False), _used(milli))
        for site, milli in sorted(used_at.items(), key=lambda i: i[0].name if i[0] else "")
        if site is not None and milli
    ]
    rest = totals["used"] - sum(p.hours["used"] for p in placed)
    own = Place(FEDERATION, FEDERATION, split, {**totals, "used": rest})
    return [own, *placed]


def _used(milli: int) -> dict[str, int]:
    return {**dict.fromkeys(HOURS, 0), "used": milli}


def used_by_factory(
    session: Session, ids: Iterable[int], start: date | None, end: date | None
) -> dict[int, dict[int | None, int]]:
    """Hours charged in [start, end] per allocation of ``ids`` and factory of use (milli).

    The factory of a charge is that of the job attempt it settles (a job that moved to another
    site is charged where each attempt ran), else the job's; None for a charge with no job.
    Reads the allocations' charge entries (only federation allocations need this).
    """
    ids = list(ids)
    if not ids:
        return {}
    until = LedgerRow.at <= datetime.combine(end, time.max, UTC) if end else true()
    since = LedgerRow.at >= datetime.combine(start, time.min, UTC) if start else true()
    where: ColumnElement[int | None] = func.coalesce(JobAttempt.factory_id, Job.factory_id)
    query = (
        select(LedgerRow.allocation_id, where, -func.sum(LedgerRow.amount_milli))
        .outerjoin(Job, Job.id == LedgerRow.job_id)
        .outerjoin(
            JobAttempt,
            and_(JobAttempt.job_id == LedgerRow.job_id, JobAttempt.attempt == LedgerRow.attempt),
        )
        .where(LedgerRow.allocation_id.in_(ids), LedgerRow.kind == LedgerKind.CHARGE, since, until)
        .group_by(LedgerRow.allocation_id, where)
    )
    out: dict[int, dict[int | None, int]] = {}
    for alloc, factory, milli in session.execute(query):
        out.setdefault(alloc, {})[factory] = int(milli)
    return out


def daily_used_by_factory(
    session: Session, ids: Iterable[int], start: date, end: date
) -> list[tuple[int, date, int | None, int]]:
    """(allocation, UTC day, factory of use, milli charged) in [start, end], as
    ``used_by_factory`` attributes charges, per day (the usage-over-time series)."""
    ids = list(ids)
    if not ids:
        return []
    sqlite = session.get_bind().dialect.name == "sqlite"
    day = func.date(LedgerRow.at) if sqlite else cast(LedgerRow.at, Date)
    place: ColumnElement[int | None] = func.coalesce(JobAttempt.factory_id, Job.factory_id)
    query = (
        select(LedgerRow.allocation_id, day, place, -func.sum(LedgerRow.amount_milli))
        .outerjoin(Job, Job.id == LedgerRow.job_id)
        .outerjoin(
            JobAttempt,
            and_(JobAttempt.job_id == LedgerRow.job_id, JobAttempt.attempt == LedgerRow.attempt),
        )
        .where(
            LedgerRow.allocation_id.in_(ids),
            LedgerRow.kind == LedgerKind.CHARGE,
            LedgerRow.at >= datetime.combine(start, time.min, UTC),
            LedgerRow.at <= datetime.combine(end, time.max, UTC),
        )
        .group_by(LedgerRow.allocation_id, day, place)
    )
    return [
        (alloc, d if isinstance(d, date) else date.fromisoformat(d), factory, int(milli))
        for alloc, d, factory, milli in session.execute(query)
    ]


def research_kinds(session: Session, ids: Iterable[int]) -> dict[int, ResearchKind]:
    """Each allocation's project's research kind (open R&D or commercial)."""
    query = (
        select(Allocation.id, Proposal.research_kind)
        .join(Project, Project.code == Allocation.project_code)
        .join(Proposal, Proposal.id == Project.proposal_id)
        .where(Allocation.id.in_(list(ids)))
    )
    return {aid: ResearchKind(kind) for aid, kind in session.execute(query)}


def split_at(own: FundingSplit, kind: ResearchKind, site: Site | None, fixed: bool) -> FundingSplit:
    """The split of hours used at ``site``: the allocation's own shares when it has a factory
    (or the site is unknown), else the site's shares for the work's kind."""
    return own if fixed or site is None else attribution_for(kind, site.split)


def country_names(session: Session) -> dict[str, str]:
    return {code: name for code, name in session.execute(select(Country.code, Country.name))}


def funding_amounts(session: Session) -> list[FundingAmount]:
    """€ per source over every funding line (the federation's and each factory's)."""
    totals: dict[str, int] = dict.fromkeys(
        (FundingSource.DIGITAL_EUROPE, FundingSource.HORIZON_EUROPE, FundingSource.NATIONAL), 0
    )
    query = select(FundingLine.source, func.sum(FundingLine.amount_eur)).group_by(
        FundingLine.source
    )
    for source, amount in session.execute(query):
        totals[source] = totals.get(source, 0) + int(amount or 0)
    return [
        FundingAmount(
            source=source,
            label=SOURCE_LABELS.get(source, source),
            amount_eur=amount,
            funds=FUNDS.get(source, "gpu_hours"),
        )
        for source, amount in totals.items()
    ]
