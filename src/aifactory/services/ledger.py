"""The GPU-hour ledger over the database: locked, append-only, never overspent.

Every change locks the allocation row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite a
no-op write of a non-key column takes the database write lock), then folds the entries into a
state, checks the new entry with the pure rules of ``domain.ledger`` and appends it, in one
transaction.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime

from sqlalchemy import bindparam, event, func, select, update
from sqlalchemy.orm import Session, SessionTransaction

from aifactory.db.models import Allocation, Event, Job, LedgerRow
from aifactory.db.types import utcnow
from aifactory.db.wake import BROKER, wake
from aifactory.domain import ledger as rules
from aifactory.domain.enums import LedgerKind, UsageLevel
from aifactory.errors import NotFound, QuotaExceeded

#: (job id, attempt): the key of a job's ledger effects.
JobAttempt = tuple[int, int]
_LEVEL_EVENTS = {
    UsageLevel.WARNING: ("allocation_warning", "80 % of the allocation is used"),
    UsageLevel.EXHAUSTED: ("allocation_exhausted", "the allocation is used up; new work stops"),
}


# The lock, read back in the same statement and refreshing the row in the session. SQLite:
# a no-op write of a column no foreign key refers to (rewriting the key itself made SQLite
# check every job and ledger row of the allocation: 9 ms with a million) takes its write lock.
_LOCK_SQLITE = (
    update(Allocation)
    .where(Allocation.id == bindparam("aid"))
    .values(status=Allocation.status)
    .returning(Allocation)
    .execution_options(synchronize_session=False, populate_existing=True)
)
_LOCK = (
    select(Allocation)
    .where(Allocation.id == bindparam("aid"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
#: ``session.info`` key: the allocations this session's transaction has locked already.
_LOCKED = "aif_ledger_locked"


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    # The transaction's end, or a savepoint's: PostgreSQL lets go of row locks taken in a
    # savepoint that rolls back, so after one the next lock() takes the lock again. (A flush's
    # own inner transaction, neither of these, ends with every flush: the locks stay.)
    if transaction.parent is None or transaction.nested:
        session.info.pop(_LOCKED, None)


def lock(session: Session, allocation_id: int) -> Allocation:
    """Take the allocation's row lock for the rest of the transaction.

    Once per transaction: the tasks of an array reserve under the lock their first task took,
    and the row in the session is the current one while the lock is held.
    """
    # Held here, not just in the session's (weak) identity map, which may drop it meanwhile.
    locked: dict[int, Allocation] = session.info.setdefault(_LOCKED, {})
    if allocation_id in locked:
        return locked[allocation_id]
    sqlite = session.get_bind().dialect.name == "sqlite"
    allocation = session.scalars(_LOCK_SQLITE if sqlite else _LOCK, {"aid": allocation_id}).first()
    if allocation is None:
        raise NotFound(f"allocation {allocation_id} not found")
    locked[allocation_id] = allocation
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
    session: Session,
    allocation_id: int,
    reserved: int,
    used: int,
    actor: str,
    job: JobAttempt | None = None,
) -> tuple[rules.LedgerState, int]:
    """Release a job attempt's reservation and charge what it used; returns (state, uncharged).

    At most once per attempt: a second settlement of the same attempt breaks the unique
    (job, attempt, kind) constraint and its whole transaction rolls back.
    """
    allocation = lock(session, allocation_id)
    current = _totals(allocation)
    settlement = rules.settle(current, reserved, used)
    job_ref = f"job:{job[0]}" if job else None
    for entry in settlement.entries:
        current = _append(session, allocation, current, entry, actor, job_ref, "", job=job)
    expiry = rules.expiry_entry(current) if allocation.status == "expired" else None
    if expiry is not None:  # hours released after the end date expire at once
        current = _append(session, allocation, current, expiry, actor, job_ref, "after end")
    return current, settlement.uncharged


def check_reserve(
    session: Session, allocation_id: int, amount: int, promised: int = 0
) -> str | None:
    """Lock the allocation and say why ``amount`` more cannot be reserved there on top of
    ``promised`` (what this transaction is about to reserve there first), or None if it can.

    Nothing is written: a submission decides where its jobs go first, stores them, then
    ``reserve``s under the lock this took.
    """
    allocation = lock(session, allocation_id)
    if allocation.status != "active":
        return f"allocation {allocation_id} is {allocation.status}"
    if amount <= 0:
        return None
    before = _totals(allocation)
    try:
        rules.check_reserve(replace(before, reserved=before.reserved + promised), amount)
    except QuotaExceeded as exc:
        return exc.message
    return None


def reserve(
    session: Session,
    allocation_id: int,
    amount: int,
    actor: str,
    job: JobAttempt | None = None,
) -> rules.LedgerState:
    """Reserve hours for work about to run; refused past the hard stop or beyond what remains."""
    allocation = lock(session, allocation_id)
    if allocation.status != "active":
        raise QuotaExceeded(f"allocation {allocation_id} is {allocation.status}")
    before = _totals(allocation)
    entry = rules.check_reserve(before, amount)
    job_ref = f"job:{job[0]}" if job else None
    return _append(session, allocation, before, entry, actor, job_ref, "", job=job)


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


def audit(session: Session) -> list[str]:
    """Every disagreement in the books; an empty list means they are clean.

    Checks, per allocation, that the running totals equal the sum of its entries and that its
    ``reserved`` equals what the jobs placed on it still hold.
    """
    held = dict(
        session.execute(
            select(Job.allocation_id, func.sum(Job.reserved_milli))
            .where(Job.allocation_id.is_not(None))
            .group_by(Job.allocation_id)
        ).all()
    )
    problems = []
    for allocation in session.scalars(select(Allocation).order_by(Allocation.id)):
        totals, entries = _totals(allocation), recompute(session, allocation.id)
        if totals != entries:
            problems.append(
                f"allocation {allocation.id}: running totals ({totals.describe()}) differ "
                f"from its entries ({entries.describe()})"
            )
        jobs_hold = int(held.get(allocation.id) or 0)
        if jobs_hold != totals.reserved:
            problems.append(
                f"allocation {allocation.id}: reserved {rules.fmt_hours(totals.reserved)} "
                f"but its jobs hold {rules.fmt_hours(jobs_hold)}"
            )
    return problems


def _append(
    session: Session,
    allocation: Allocation,
    before: rules.LedgerState,
    entry: rules.LedgerEntry,
    actor: str,
    job_ref: str | None,
    note: str,
    at: datetime | None = None,
    job: JobAttempt | None = None,
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
            job_id=job[0] if job else None,
            attempt=job[1] if job else None,
            note=note,
        )
    )
    for level in rules.crossed_levels(before, after):
        kind, message = _LEVEL_EVENTS[level]
        _event(session, kind, allocation.id, f"{message}: {after.describe()}")
    allocation.usage_level = rules.usage_level(after)
    if entry.amount > 0:  # hours came back (grant, release): waiting jobs may fit now
        wake(session, BROKER)
    return after


def _event(session: Session, kind: str, allocation_id: int, message: str) -> None:
    session.add(Event(kind=kind, subject=f"allocation:{allocation_id}", message=message))
