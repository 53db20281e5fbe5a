"""The GPU-hour ledger over the database: locked, append-only, never overspent.

Every change locks the allocation row first (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite a
no-op write of a non-key column takes the database write lock), then folds the entries into a
state, checks the new entry with the pure rules of ``domain.ledger`` and appends it, in one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import cast

from sqlalchemy import Table, bindparam, event, func, insert, select, update
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.util import identity_key

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
        session.info.pop(_HELD, None)


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


# --- the submission path: Core statements on a held row --------------------------------------

_A, _L = cast(Table, Allocation.__table__), cast(Table, LedgerRow.__table__)
_TOTALS = (
    _A.c.status,
    _A.c.granted_milli,
    _A.c.used_milli,
    _A.c.reserved_milli,
    _A.c.expired_milli,
)
_HOLD_SQLITE = (
    update(_A).where(_A.c.id == bindparam("aid")).values(status=_A.c.status).returning(*_TOTALS)
)
_HOLD = select(*_TOTALS).where(_A.c.id == bindparam("aid")).with_for_update()
_SET_RESERVED = (
    update(_A)
    .where(_A.c.id == bindparam("aid"))
    .values(reserved_milli=bindparam("reserved"), usage_level=bindparam("level"))
)
_HELD = "aif_ledger_held"


@dataclass
class Held:
    """An allocation's totals as the transaction that locked its row sees them."""

    allocation_id: int
    status: str
    books: rules.LedgerState


def hold(session: Session, allocation_id: int) -> Held:
    """Lock the allocation's row (once per transaction, as ``lock``) and read its totals, in
    one Core statement: the submission path, which keeps no ORM allocation in the session."""
    held: dict[int, Held] = session.info.setdefault(_HELD, {})
    if allocation_id in held:
        return held[allocation_id]
    if session.info.get(_LOCKED):
        session.flush()  # an ORM lock() earlier in the transaction: its changes first
    sqlite = session.get_bind().dialect.name == "sqlite"
    row = session.connection().execute(_HOLD_SQLITE if sqlite else _HOLD, {"aid": allocation_id})
    found = row.first()
    if found is None:
        raise NotFound(f"allocation {allocation_id} not found")
    status, granted, used, reserved, expired = found
    books = rules.LedgerState(granted or 0, used or 0, reserved or 0, expired or 0)
    held[allocation_id] = Held(allocation_id, status, books)
    return held[allocation_id]


def shortfall(held: Held, amount: int, promised: int = 0) -> str | None:
    """Why ``amount`` more cannot be reserved on a held allocation on top of ``promised``
    (what the transaction is about to reserve there first), or None if it can."""
    if held.status != "active":
        return f"allocation {held.allocation_id} is {held.status}"
    if amount <= 0:
        return None
    books = held.books
    try:
        rules.check_reserve(replace(books, reserved=books.reserved + promised), amount)
    except QuotaExceeded as exc:
        return exc.message
    return None


def reserve_held(
    session: Session, held: Held, amounts: list[tuple[int, JobAttempt]], actor: str
) -> None:
    """Reserve for several jobs on a held allocation: one UPDATE of its totals and one
    multi-row INSERT of the entries, checked entry by entry with the pure rules.

    Raises:
        QuotaExceeded: The allocation is not active, or an amount exceeds what remains (the
            transaction must then roll back: nothing is half-written that it keeps).
    """
    if held.status != "active":
        raise QuotaExceeded(f"allocation {held.allocation_id} is {held.status}")
    before = books = held.books
    rows, at = [], utcnow()
    for amount, (job_id, attempt) in amounts:
        entry = rules.check_reserve(books, amount)
        books = rules.fold(books, entry)
        job = (job_id, attempt)
        rows.append(_entry_row(held.allocation_id, entry, actor, at, job, f"job:{job_id}"))
    if not rows:
        return
    level = rules.usage_level(books)
    conn = session.connection()
    conn.execute(
        _SET_RESERVED, {"aid": held.allocation_id, "reserved": books.reserved, "level": level}
    )
    conn.execute(insert(_L), rows)
    for crossed in rules.crossed_levels(before, books):
        kind, message = _LEVEL_EVENTS[crossed]
        _event(session, kind, held.allocation_id, f"{message}: {books.describe()}")
    stale = session.identity_map.get(identity_key(Allocation, held.allocation_id))
    if stale is not None:
        session.expire(stale)  # the row changed beneath an ORM copy of it
    held.books = books


def _entry_row(
    allocation_id: int,
    entry: rules.LedgerEntry,
    actor: str,
    at: datetime,
    job: JobAttempt | None,
    job_ref: str | None,
    note: str = "",
) -> dict[str, object]:
    return {
        "allocation_id": allocation_id,
        "kind": entry.kind,
        "amount_milli": entry.amount,
        "at": at,
        "actor": actor,
        "job_ref": job_ref,
        "job_id": job[0] if job else None,
        "attempt": job[1] if job else None,
        "note": note,
    }


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
    row = _entry_row(allocation.id, entry, actor, at or utcnow(), job, job_ref, note)
    # Written now, as a plain INSERT: nothing reads the row back in this transaction, so
    # the unit of work need not fetch its id.
    session.execute(insert(LedgerRow), [row])
    for level in rules.crossed_levels(before, after):
        kind, message = _LEVEL_EVENTS[level]
        _event(session, kind, allocation.id, f"{message}: {after.describe()}")
    allocation.usage_level = rules.usage_level(after)
    if entry.amount > 0:  # hours came back (grant, release): waiting jobs may fit now
        wake(session, BROKER)
    return after


def _event(session: Session, kind: str, allocation_id: int, message: str) -> None:
    session.add(Event(kind=kind, subject=f"allocation:{allocation_id}", message=message))
