"""The GPU-hour ledger over the database: locked, append-only, never overspent.

Every change locks the allocation row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite a
no-op write takes the database write lock), then folds the entries into a state, checks the new
entry with the pure rules of ``domain.ledger`` and appends it, in one transaction.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aifactory.db.models import Allocation, Event, LedgerRow
from aifactory.db.types import utcnow
from aifactory.domain import ledger as rules
from aifactory.domain.enums import LedgerKind, UsageLevel
from aifactory.errors import NotFound, QuotaExceeded

_LEVEL_EVENTS = {
    UsageLevel.WARNING: ("allocation_warning", "80 % of the allocation is used"),
    UsageLevel.EXHAUSTED: ("allocation_exhausted", "the allocation is used up; new work stops"),
}


def lock(session: Session, allocation_id: int) -> Allocation:
    """Take the allocation's row lock for the rest of the transaction."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(Allocation).where(Allocation.id == allocation_id).values(id=Allocation.id)
        )
        allocation = session.get(Allocation, allocation_id, populate_existing=True)
    else:
        allocation = session.get(
            Allocation, allocation_id, with_for_update=True, populate_existing=True
        )
    if allocation is None:
        raise NotFound(f"allocation {allocation_id} not found")
    return allocation


def state(session: Session, allocation_id: int) -> rules.LedgerState:
    """The allocation's totals (kept on its row with every entry)."""
    allocation = session.get(Allocation, allocation_id)
    if allocation is None:
        raise NotFound(f"allocation {allocation_id} not found")
    return _totals(allocation)


def _totals(a: Allocation) -> rules.LedgerState:
    return rules.LedgerState(
        granted=a.granted_milli or 0,
        used=a.used_milli or 0,
        reserved=a.reserved_milli or 0,
        expired=a.expired_milli or 0,
    )


def recompute(session: Session, allocation_id: int) -> rules.LedgerState:
    """Totals summed from the entries themselves (the audit of the running totals)."""
    rows = session.execute(
        select(LedgerRow.kind, func.sum(LedgerRow.amount_milli))
        .where(LedgerRow.allocation_id == allocation_id)
        .group_by(LedgerRow.kind)
    )
    entries = [rules.LedgerEntry(LedgerKind(kind), int(total)) for kind, total in rows if total]
    return rules.summarise(entries)


def post(
    session: Session,
    allocation_id: int,
    kind: LedgerKind,
    magnitude: int,
    actor: str,
    job_ref: str | None = None,
    note: str = "",
) -> rules.LedgerState:
    """Lock, check and append one entry; returns the new state. Refusals store nothing."""
    allocation = lock(session, allocation_id)
    before = _totals(allocation)
    if kind is LedgerKind.EXPIRE:
        entry = rules.expiry_entry(before)
        if entry is None:
            return before
    else:
        entry = rules.CHECKS[kind](before, magnitude)
    return _append(session, allocation, before, entry, actor, job_ref, note)


def settle(
    session: Session, allocation_id: int, reserved: int, used: int, actor: str, job_ref: str
) -> tuple[rules.LedgerState, int]:
    """Release a job's reservation and charge what it used; returns (state, uncharged)."""
    allocation = lock(session, allocation_id)
    current = _totals(allocation)
    settlement = rules.settle(current, reserved, used)
    for entry in settlement.entries:
        current = _append(session, allocation, current, entry, actor, job_ref, "")
    expiry = rules.expiry_entry(current) if allocation.status == "expired" else None
    if expiry is not None:  # hours released after the end date expire at once
        current = _append(session, allocation, current, expiry, actor, job_ref, "after end")
    return current, settlement.uncharged


def reserve(
    session: Session, allocation_id: int, amount: int, actor: str, job_ref: str | None = None
) -> rules.LedgerState:
    """Reserve hours for work about to run; refused past the hard stop or beyond what remains."""
    allocation = lock(session, allocation_id)
    if allocation.status != "active":
        raise QuotaExceeded(f"allocation {allocation_id} is {allocation.status}")
    before = _totals(allocation)
    entry = rules.check_reserve(before, amount)
    return _append(session, allocation, before, entry, actor, job_ref, "")


def expire_due(session: Session, today: date, actor: str = "system") -> list[int]:
    """Expire every active allocation whose end date has passed; returns their ids."""
    due = session.scalars(
        select(Allocation.id).where(Allocation.status == "active", Allocation.end_date < today)
    ).all()
    for allocation_id in due:
        post(session, allocation_id, LedgerKind.EXPIRE, 0, actor, note=f"ended before {today}")
        lock(session, allocation_id).status = "expired"
        _event(session, "allocation_expired", allocation_id, "the allocation reached its end")
    session.flush()
    return list(due)


def entries(session: Session, allocation_id: int) -> list[LedgerRow]:
    return list(
        session.scalars(
            select(LedgerRow).where(LedgerRow.allocation_id == allocation_id).order_by(LedgerRow.id)
        )
    )


def _append(
    session: Session,
    allocation: Allocation,
    before: rules.LedgerState,
    entry: rules.LedgerEntry,
    actor: str,
    job_ref: str | None,
    note: str,
    at: datetime | None = None,
) -> rules.LedgerState:
    after = rules.fold(before, entry)
    allocation.granted_milli, allocation.used_milli = after.granted, after.used
    allocation.reserved_milli, allocation.expired_milli = after.reserved, after.expired
    session.add(
        LedgerRow(
            allocation_id=allocation.id,
            kind=entry.kind,
            amount_milli=entry.amount,
            at=at or utcnow(),
            actor=actor,
            job_ref=job_ref,
            note=note,
        )
    )
    for level in rules.crossed_levels(before, after):
        kind, message = _LEVEL_EVENTS[level]
        _event(session, kind, allocation.id, f"{message}: {after.describe()}")
    allocation.usage_level = rules.usage_level(after)
    session.flush()
    return after


def _event(session: Session, kind: str, allocation_id: int, message: str) -> None:
    session.add(Event(kind=kind, subject=f"allocation:{allocation_id}", message=message))
