"""GPU-hour ledger arithmetic for one allocation, and funding attribution.

Unit: **integer milli-GPU-hours** (1 normalised GPU-hour = 1000). Integers are exact, sum in SQL
(``SUM(amount)`` on a BIGINT column), and compare without rounding surprises; ``to_milli`` and
``from_milli`` convert at the edges (API and CLI show GPU-hours with up to three decimals).

Entries are append-only and carry a **signed** amount, so the balance (the hours still free to
reserve) is simply their sum:

=========  ======  ===============================================================
kind       sign    meaning
=========  ======  ===============================================================
grant      +       hours awarded
adjust     ±       operator correction of the award (a cut may not exceed remaining)
reserve    -       hours held for a pending job (refused beyond what remains)
release    +       a hold given back (never more than is held)
charge     -       hours used (never more than remains; see ``settle``)
expire     -       what remains at the allocation's end
=========  ======  ===============================================================

Derived: ``granted = grants + adjusts``, ``used = charges``, ``reserved = reserves - releases``,
``remaining = balance = granted - used - reserved - expired``. Every check below keeps
``remaining >= 0`` and ``reserved >= 0``, so the allocation can never be overspent. Services hold
a row lock on the allocation, summarise its entries, call a ``check_*`` function and append the
entry it returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from aifactory.domain.enums import LedgerKind as K
from aifactory.domain.enums import ResearchKind, UsageLevel
from aifactory.errors import Conflict, Invalid, QuotaExceeded

MILLI_PER_HOUR = 1000
SECONDS_PER_HOUR = 3600
_MICROSECOND = timedelta(microseconds=1)
WARNING_FRACTION = Decimal("0.8")
_SIGN: Mapping[K, int] = {K.GRANT: 1, K.RESERVE: -1, K.CHARGE: -1, K.RELEASE: 1, K.EXPIRE: -1}


def to_milli(hours: Decimal | int | str) -> int:
    """Convert GPU-hours (at most three decimals) to integer milli-GPU-hours.

    Raises:
        Invalid: Not a number, or finer than a milli-GPU-hour.
    """
    try:
        scaled = Decimal(str(hours)) * MILLI_PER_HOUR
    except InvalidOperation as exc:
        raise Invalid.field("gpu_hours", "number", f"{hours!r} is not a number") from exc
    if not scaled.is_finite() or scaled != scaled.to_integral_value():
        raise Invalid.field("gpu_hours", "precision", f"{hours} has more than 3 decimals")
    return int(scaled)


def from_milli(milli: int) -> Decimal:
    """Convert milli-GPU-hours to GPU-hours, exactly."""
    return Decimal(milli).scaleb(-3)


def fmt_hours(milli: int) -> str:
    """Human form, e.g. ``1,234.5 GPU-h``."""
    value = from_milli(milli)
    text = f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{text} GPU-h"


@dataclass(frozen=True)
class LedgerEntry:
    """One append-only ledger entry; ``amount`` is signed milli-GPU-hours."""

    kind: K
    amount: int

    def __post_init__(self) -> None:
        if self.amount == 0:
            raise Invalid.field("amount", "non_zero", f"{self.kind} entry of 0 GPU-h")
        sign = _SIGN.get(self.kind)
        if sign is not None and self.amount * sign < 0:
            raise Invalid.field(
                "amount", "sign", f"{self.kind} amount {self.amount} has the wrong sign"
            )


def make_entry(kind: K, magnitude: int) -> LedgerEntry:
    """Build an entry from a positive magnitude (for ``adjust``, the signed change)."""
    return LedgerEntry(kind, magnitude * _SIGN.get(kind, 1))


@dataclass(frozen=True)
class LedgerState:
    """Totals derived from an allocation's entries (milli-GPU-hours, all >= 0 when valid)."""

    granted: int = 0
    used: int = 0
    reserved: int = 0
    expired: int = 0

    @property
    def remaining(self) -> int:
        """Hours free to reserve: the balance, i.e. the sum of all entries."""
        return self.granted - self.used - self.reserved - self.expired

    @property
    def used_fraction(self) -> Decimal:
        """Used over granted (1 when nothing is granted)."""
        return Decimal(self.used) / self.granted if self.granted > 0 else Decimal(1)

    def describe(self) -> str:
        """The numbers, for error messages."""
        return (
            f"granted {fmt_hours(self.granted)}, used {fmt_hours(self.used)}, "
            f"reserved {fmt_hours(self.reserved)}, expired {fmt_hours(self.expired)}, "
            f"remaining {fmt_hours(self.remaining)}"
        )


_FOLD: Mapping[K, Callable[[LedgerState, int], LedgerState]] = {
    K.GRANT: lambda s, a: replace(s, granted=s.granted + a),
    K.ADJUST: lambda s, a: replace(s, granted=s.granted + a),
    K.RESERVE: lambda s, a: replace(s, reserved=s.reserved - a),
    K.RELEASE: lambda s, a: replace(s, reserved=s.reserved - a),
    K.CHARGE: lambda s, a: replace(s, used=s.used - a),
    K.EXPIRE: lambda s, a: replace(s, expired=s.expired - a),
}


def fold(state: LedgerState, entry: LedgerEntry) -> LedgerState:
    """Add one stored entry to the totals (no checks; use ``apply`` for new entries)."""
    return _FOLD[entry.kind](state, entry.amount)


def summarise(entries: Iterable[LedgerEntry]) -> LedgerState:
    """Totals of stored entries; ``summarise(e).remaining == balance(e)``."""
    state = LedgerState()
    for entry in entries:
        state = fold(state, entry)
    return state


def balance(entries: Iterable[LedgerEntry]) -> int:
    """The balance: the plain sum of the signed amounts."""
    return sum(e.amount for e in entries)


def _positive(amount: int, what: str) -> None:
    if amount <= 0:
        raise Invalid.field("amount", "positive", f"{what} of {fmt_hours(amount)}: must be > 0")


def _quota(message: str, state: LedgerState, requested: int) -> QuotaExceeded:
    extra = {
        "requested_milli": requested,
        "remaining_milli": state.remaining,
        "requested_gpu_hours": str(from_milli(requested)),
        "remaining_gpu_hours": str(from_milli(state.remaining)),
    }
    return QuotaExceeded(f"{message} ({state.describe()})", extra=extra)


def check_grant(state: LedgerState, amount: int) -> LedgerEntry:
    """A grant entry of ``amount`` milli-GPU-hours (> 0)."""
    _positive(amount, "grant")
    return make_entry(K.GRANT, amount)


def check_reserve(state: LedgerState, amount: int) -> LedgerEntry:
    """A reserve entry, refused when larger than what remains.

    Raises:
        Invalid: ``amount`` not positive.
        QuotaExceeded: ``amount`` exceeds ``state.remaining``; the message and ``extra``
            give requested and remaining hours and the allocation's totals.
    """
    _positive(amount, "reservation")
    if amount > state.remaining:
        msg = (
            f"reservation of {fmt_hours(amount)} exceeds the {fmt_hours(state.remaining)} remaining"
        )
        raise _quota(msg, state, amount)
    return make_entry(K.RESERVE, amount)


def check_release(state: LedgerState, amount: int) -> LedgerEntry:
    """A release entry giving back at most what is reserved.

    Raises:
        Invalid: ``amount`` not positive.
        Conflict: ``amount`` exceeds the hours currently reserved.
    """
    _positive(amount, "release")
    if amount > state.reserved:
        msg = f"release of {fmt_hours(amount)} exceeds the {fmt_hours(state.reserved)} reserved"
        raise Conflict(msg)
    return make_entry(K.RELEASE, amount)


def check_charge(state: LedgerState, amount: int) -> LedgerEntry:
    """A charge entry for used hours, refused beyond what remains (hard stop at 100 %).

    Raises:
        Invalid: ``amount`` not positive.
        QuotaExceeded: ``amount`` exceeds ``state.remaining``.
    """
    _positive(amount, "charge")
    if amount > state.remaining:
        msg = f"charge of {fmt_hours(amount)} exceeds the {fmt_hours(state.remaining)} remaining"
        raise _quota(msg, state, amount)
    return make_entry(K.CHARGE, amount)


def check_adjust(state: LedgerState, delta: int) -> LedgerEntry:
    """An adjust entry changing the award by ``delta`` (a cut may not exceed what remains).

    Raises:
        Invalid: ``delta`` is zero.
        QuotaExceeded: A cut larger than ``state.remaining``.
    """
    if delta == 0:
        raise Invalid.field("amount", "non_zero", "adjustment of 0 GPU-h")
    if -delta > state.remaining:
        msg = f"cut of {fmt_hours(-delta)} exceeds the {fmt_hours(state.remaining)} remaining"
        raise _quota(msg, state, -delta)
    return make_entry(K.ADJUST, delta)


def expiry_entry(state: LedgerState) -> LedgerEntry | None:
    """The entry that expires everything still remaining, or ``None`` when nothing remains.

    Outstanding reservations are not expired (running jobs settle them); a release after
    expiry makes hours remain again, so services expire again after settling.
    """
    return make_entry(K.EXPIRE, state.remaining) if state.remaining > 0 else None


def apply(state: LedgerState, entry: LedgerEntry) -> LedgerState:
    """Check a new entry against the state (as the ``check_*`` functions do) and fold it in.

    Raises:
        Invalid, Conflict, QuotaExceeded: As the matching ``check_*`` function.
    """
    magnitude = entry.amount * _SIGN.get(entry.kind, 1)
    CHECKS[entry.kind](state, magnitude)
    return fold(state, entry)


def _check_expire(state: LedgerState, amount: int) -> LedgerEntry:
    if amount != state.remaining:
        msg = f"expiry must be the {fmt_hours(state.remaining)} remaining, not {fmt_hours(amount)}"
        raise Conflict(msg)
    return make_entry(K.EXPIRE, amount)


CHECKS: Mapping[K, Callable[[LedgerState, int], LedgerEntry]] = {
    K.GRANT: check_grant,
    K.RESERVE: check_reserve,
    K.RELEASE: check_release,
    K.CHARGE: check_charge,
    K.ADJUST: check_adjust,
    K.EXPIRE: _check_expire,
}


@dataclass(frozen=True)
class Settlement:
    """Entries that close a job's reservation, and usage beyond what remained (not charged)."""

    entries: tuple[LedgerEntry, ...]
    uncharged: int


def settle(state: LedgerState, reserved: int, used: int) -> Settlement:
    """Release a job's reservation and charge its usage, capped at what then remains.

    Args:
        state: The allocation's totals now.
        reserved: The job's reservation (0 if it had none).
        used: Hours the job used (>= 0).

    Raises:
        Invalid: Negative ``used``.
        Conflict: ``reserved`` exceeds what is reserved.
    """
    if used < 0:
        raise Invalid.field("used", "non_negative", f"usage of {fmt_hours(used)}")
    entries: list[LedgerEntry] = []
    if reserved:
        entries.append(check_release(state, reserved))
        state = fold(state, entries[-1])
    charged = min(used, state.remaining)
    if charged:
        entries.append(check_charge(state, charged))
    return Settlement(tuple(entries), used - charged)


def charge_milli(gpu_seconds: int, charge_factor: Decimal) -> int:
    """Normalised milli-GPU-hours for raw GPU-seconds on a partition, rounded up, in integers:
    ``ceil(gpu_seconds x charge_factor x 1000 / 3600)``.

    Raises:
        Invalid: Negative seconds or a non-positive (or non-finite) charge factor.
    """
    if gpu_seconds < 0 or not charge_factor.is_finite() or charge_factor <= 0:
        raise Invalid.field("usage", "positive", f"{gpu_seconds} s at factor {charge_factor}")
    num, den = charge_factor.as_integer_ratio()
    return -(-gpu_seconds * num * MILLI_PER_HOUR // (den * SECONDS_PER_HOUR))


def used_gpu_seconds(gpus: int, elapsed: timedelta) -> int:
    """GPUs x elapsed rounded **up** to the next whole GPU-second, exactly (in microseconds, so
    an exact multiple is never charged one more); a negative span counts as 0.

    Raises:
        Invalid: Negative GPUs.
    """
    if gpus < 0:
        raise Invalid.field("usage", "non_negative", f"{gpus} GPUs")
    micros = max(elapsed // _MICROSECOND, 0)
    return -(-gpus * micros // 1_000_000)


def usage_milli(gpus: int, elapsed: timedelta, charge_factor: Decimal) -> int:
    """An attempt's charge: rounded up to the GPU-second, then up to the milli-GPU-hour."""
    return charge_milli(used_gpu_seconds(gpus, elapsed), charge_factor)


_RANK = {UsageLevel.OK: 0, UsageLevel.WARNING: 1, UsageLevel.EXHAUSTED: 2}


def usage_level(state: LedgerState, warn_at: Decimal = WARNING_FRACTION) -> UsageLevel:
    """``exhausted`` at 100 % used, ``warning`` from ``warn_at`` (80 %), else ``ok``."""
    fraction = state.used_fraction
    if fraction >= 1:
        return UsageLevel.EXHAUSTED
    return UsageLevel.WARNING if fraction >= warn_at else UsageLevel.OK


def crossed_levels(
    before: LedgerState, after: LedgerState, warn_at: Decimal = WARNING_FRACTION
) -> tuple[UsageLevel, ...]:
    """Levels newly reached between two states (emit one event each), lowest first."""
    low, high = _RANK[usage_level(before, warn_at)], _RANK[usage_level(after, warn_at)]
    return tuple(level for level, rank in _RANK.items() if low < rank <= high)


# ---- funding attribution -----------------------------------------------------------------------


@dataclass(frozen=True)
class FundingSplit:
    """Shares of usage attributed to EU, national and commercial funding; they sum to 1."""

    eu: Decimal
    national: Decimal
    commercial: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name, share in self.as_dict().items():
            if not Decimal(0) <= share <= Decimal(1):
                raise Invalid.field(f"funding.{name}", "share_range", f"{share} not in 0..1")
        total = self.eu + self.national + self.commercial
        if total != 1:
            raise Invalid.field("funding", "sums_to_one", f"shares sum to {total}, not 1")

    def as_dict(self) -> dict[str, Decimal]:
        """Shares by source name."""
        return {"eu": self.eu, "national": self.national, "commercial": self.commercial}


COMMERCIAL_ONLY = FundingSplit(Decimal(0), Decimal(0), Decimal(1))

_ATTRIBUTION: Mapping[ResearchKind, Callable[[FundingSplit], FundingSplit]] = {
    ResearchKind.OPEN_RD: lambda capacity: capacity,
    ResearchKind.COMMERCIAL: lambda capacity: COMMERCIAL_ONLY,
}


def attribution_for(kind: ResearchKind, capacity_split: FundingSplit) -> FundingSplit:
    """An allocation's funding split: the factory's capacity split for open R&D, all
    commercial for commercial pay-per-use work."""
    return _ATTRIBUTION[kind](capacity_split)


def attribute(amount: int, split: FundingSplit) -> dict[str, int]:
    """Split ``amount`` by the shares; the parts sum exactly to ``amount`` (largest remainder)."""
    sign, total = (-1 if amount < 0 else 1), abs(amount)
    raw = {name: share * total for name, share in split.as_dict().items()}
    parts = {name: int(value) for name, value in raw.items()}
    leftover = total - sum(parts.values())
    by_remainder = sorted(raw, key=lambda n: (raw[n] - parts[n], raw[n]), reverse=True)
    for name in by_remainder[:leftover]:
        parts[name] += 1
    return {name: sign * value for name, value in parts.items()}
