"""EASY backfilling, the rule the live broker and the simulator share. Pure, no I/O.

The first job in line that cannot start in a pool of GPUs gets a reservation: the earliest
predicted end (start + time limit of the jobs holding the pool) at which enough GPUs are free,
and the GPUs spare at that moment. Any other job may start now only if it fits the free GPUs and
cannot delay that reservation: it ends before it, or it uses only the spare GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Reservation", "allows", "shadow", "shadow_at"]


@dataclass(frozen=True, slots=True)
class Reservation:
    """When the job next in line starts at the latest, and the GPUs spare then."""

    start: float
    extra: int


def shadow(free: int, running: Sequence[tuple[float, object, int]], width: int) -> Reservation:
    """When ``width`` units are free by predicted ends, and the spare units then.

    Args:
        free: Units free now.
        running: ``(predicted end, any tie-breaker, units)`` of the jobs holding units, sorted
            by predicted end.
        width: Units the waiting job needs.

    Raises:
        ValueError: ``width`` never fits, even once every running job has ended.
    """
    start, extra = shadow_at(free, running, width)
    return Reservation(start, extra)


def shadow_at(free: int, running: Sequence[tuple[Any, object, int]], width: int) -> tuple[Any, int]:
    """:func:`shadow` as a plain ``(start, extra)`` tuple, for the simulator's hot loop.

    ``start`` is the predicted end as given (an ``int`` for integer ends), or ``-inf`` when
    ``width`` fits now. Same arguments and errors as :func:`shadow`.
    """
    avail = free
    for i, (end, _, units) in enumerate(running):
        avail += units
        if avail >= width:
            for later_end, _, later_units in running[i + 1 :]:  # ends at the same moment
                if later_end != end:
                    break
                avail += later_units
            return end, avail - width
    if free >= width:
        return float("-inf"), free - width
    raise ValueError(f"{width} units never fit: {avail} in all")


def allows(reservation: Reservation | None, now: float, length: float, width: int) -> int | None:
    """Whether a job of ``width`` units for ``length`` seconds may start beside the reservation.

    Returns:
        ``None`` when it would delay the reserved job; otherwise the spare units left after it
        (unchanged when it ends before the reservation).
    """
    if reservation is None:
        return 0
    if now + length <= reservation.start:
        return reservation.extra  # ends before the reserved job starts: cannot delay it
    if width <= reservation.extra:
        return reservation.extra - width  # runs on units the reserved job does not need
    return None
