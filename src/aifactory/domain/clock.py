"""Working-day clock for service levels: weekends and a configurable holiday set are skipped.

Dates are calendar dates; a ``datetime`` is reduced to its date (callers pass UTC). The day the
clock starts on does not count: a proposal submitted on Friday with a two-working-day clock is
due on Tuesday (Monday is day 1), and so is one submitted on Saturday.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from aifactory.domain.access_modes import ServiceLevel, read_data_file
from aifactory.domain.enums import ClockStart
from aifactory.errors import Invalid

Holidays = frozenset[date]
_ONE_DAY = timedelta(days=1)
_SATURDAY = 5


def as_date(value: date | datetime) -> date:
    """Reduce a ``datetime`` to its date; return a ``date`` unchanged."""
    return value.date() if isinstance(value, datetime) else value


def is_working_day(day: date | datetime, holidays: Iterable[date] = frozenset()) -> bool:
    """Whether ``day`` is neither a Saturday, a Sunday nor a holiday."""
    d = as_date(day)
    return d.weekday() < _SATURDAY and d not in holidays


def next_working_day(day: date | datetime, holidays: Iterable[date] = frozenset()) -> date:
    """``day`` itself when it is a working day, else the first working day after it."""
    hol = frozenset(holidays)
    d = as_date(day)
    while not is_working_day(d, hol):
        d += _ONE_DAY
    return d


def add_working_days(
    start: date | datetime, n: int, holidays: Iterable[date] = frozenset()
) -> date:
    """Return the ``n``-th working day after ``start`` (``start`` itself never counts).

    Args:
        start: The day the clock starts (submission or cut-off).
        n: Working days to add; 0 gives the next working day on or after ``start``.
        holidays: Days to skip besides weekends.

    Raises:
        Invalid: ``n`` is negative.
    """
    if n < 0:
        raise Invalid.field("working_days", "non_negative", f"cannot add {n} working days")
    hol = frozenset(holidays)
    d = as_date(start)
    if n == 0:
        return next_working_day(d, hol)
    counted = 0
    while counted < n:
        d += _ONE_DAY
        counted += is_working_day(d, hol)
    return d


def working_days_between(
    start: date | datetime, end: date | datetime, holidays: Iterable[date] = frozenset()
) -> int:
    """Count working days in ``(start, end]``, e.g. working days left until a deadline.

    When ``end`` is before ``start`` the count of ``(end, start]`` is returned negated.
    """
    hol = frozenset(holidays)
    a, b = as_date(start), as_date(end)
    sign = 1
    if b < a:
        a, b, sign = b, a, -1
    days = (b - a).days
    count = sum(is_working_day(a + timedelta(days=i), hol) for i in range(1, days + 1))
    return sign * count


def add_months(day: date, months: int) -> date:
    """Same day ``months`` later, clamped to the month's last day (31 Jan + 1 = 28/29 Feb).

    Used for allocation ends (start + duration) and the PI contract rule.
    """
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _from_submission(submitted: date, cutoff: date | None) -> date:
    return submitted


def _from_cutoff(submitted: date, cutoff: date | None) -> date:
    if cutoff is None:
        raise Invalid.field("cutoff", "required", "this clock counts from the cut-off; none given")
    return cutoff


_CLOCK_START: Mapping[ClockStart, Callable[[date, date | None], date]] = {
    ClockStart.SUBMISSION: _from_submission,
    ClockStart.CUTOFF: _from_cutoff,
}


def service_deadline(
    service_level: ServiceLevel,
    submitted_at: date | datetime,
    cutoff: date | None = None,
    holidays: Iterable[date] = frozenset(),
) -> date:
    """The last day a decision is due under a mode's (or call's) service level.

    Args:
        service_level: Working days and what they count from.
        submitted_at: When the proposal was submitted.
        cutoff: The cut-off the proposal belongs to (required for cut-off clocks).
        holidays: Days to skip besides weekends.

    Raises:
        Invalid: A cut-off clock without a cut-off.
    """
    start = _CLOCK_START[service_level.counts_from](as_date(submitted_at), cutoff)
    return add_working_days(start, service_level.working_days, holidays)


def is_overdue(deadline: date, today: date | datetime, decided: bool = False) -> bool:
    """Whether an undecided proposal is past its deadline (the deadline day is still on time)."""
    return not decided and as_date(today) > deadline


def parse_holidays(data: Any) -> Holidays:
    """Validate parsed YAML ``{"holidays": {year: [dates]}}`` into a set of dates.

    Raises:
        Invalid: Not a mapping of years to date lists, or a date filed under the wrong year.
    """
    years = data.get("holidays") if isinstance(data, Mapping) else None
    if not isinstance(years, Mapping):
        raise Invalid.field("holidays", "required", "expected a mapping of year to dates")
    days: set[date] = set()
    for year, items in years.items():
        if not isinstance(items, list):
            raise Invalid.field(f"holidays.{year}", "type", "expected a list of dates")
        for i, day in enumerate(items):
            if not isinstance(day, date) or isinstance(day, datetime) or day.year != int(year):
                msg = f"{day!r} is not a date in {year}"
                raise Invalid.field(f"holidays.{year}.{i}", "date_in_year", msg)
            days.add(day)
    return frozenset(days)


@cache
def load_holidays() -> Holidays:
    """The shipped holiday calendar (read once)."""
    return parse_holidays(read_data_file("holidays.yaml"))
