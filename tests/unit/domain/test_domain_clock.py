"""Working-day clock: weekends and holidays skipped, deadlines per mode, overdue flags."""

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aifactory.domain.access_modes import ServiceLevel, load_access_modes
from aifactory.domain.clock import (
    add_months,
    add_working_days,
    is_overdue,
    is_working_day,
    load_holidays,
    parse_holidays,
    service_deadline,
    working_days_between,
)
from aifactory.domain.enums import AccessModeCode as M
from aifactory.domain.enums import ClockStart
from aifactory.errors import Invalid

HOLIDAYS = load_holidays()


def _easter(year: int) -> date:
    """Anonymous Gregorian algorithm (Meeus/Jones/Butcher), to cross-check the YAML."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * ell) // 433
    month = (h + ell - 7 * m + 90) // 25
    return date(year, month, (h + ell - 7 * m + 33 * month + 19) % 32)


@pytest.mark.parametrize("year", [2025, 2026, 2027])
def test_shipped_calendar_holds_the_easter_based_holidays(year: int) -> None:
    easter = _easter(year)
    for offset in (-3, -2, 1, 39, 40, 50):  # Thursday, Friday, Monday, Ascension+1, Whit Monday
        assert easter + timedelta(days=offset) in HOLIDAYS
    assert {date(year, 1, 1), date(year, 5, 1), date(year, 5, 9), date(year, 12, 25)} <= HOLIDAYS


def test_friday_plus_two_working_days_is_tuesday() -> None:
    assert add_working_days(date(2026, 11, 20), 2) == date(2026, 11, 24)
    assert add_working_days(date(2026, 11, 21), 2) == date(2026, 11, 24)  # Saturday


def test_holidays_are_skipped() -> None:
    # Wednesday 1 April 2026 + 2 working days: Thu 2 and Fri 3 (Easter) and Mon 6 are holidays.
    assert add_working_days(date(2026, 4, 1), 2, HOLIDAYS) == date(2026, 4, 8)
    assert add_working_days(date(2026, 4, 1), 2) == date(2026, 4, 3)


def test_zero_days_gives_the_next_working_day() -> None:
    assert add_working_days(date(2026, 11, 22), 0) == date(2026, 11, 23)
    assert add_working_days(date(2026, 11, 23), 0) == date(2026, 11, 23)


def test_negative_days_are_refused() -> None:
    with pytest.raises(Invalid):
        add_working_days(date(2026, 1, 5), -1)


def test_fifo_deadline_counts_from_submission() -> None:
    pg = load_access_modes()[M.PLAYGROUND]
    assert pg.service_level is not None
    submitted = datetime(2026, 12, 22, 16, 30)
    # Tue 22 Dec: Wed 23 is day 1, then closure 24-31 Dec and 1-2 Jan; Mon 4 Jan 2027 is day 2.
    assert service_deadline(pg.service_level, submitted, None, HOLIDAYS) == date(2027, 1, 4)


def test_cutoff_deadline_counts_from_the_cutoff() -> None:
    ls = load_access_modes()[M.LARGE_SCALE]
    assert ls.service_level is not None
    deadline = service_deadline(ls.service_level, date(2026, 2, 20), date(2026, 3, 1), HOLIDAYS)
    assert deadline == date(2026, 3, 13)  # Sunday 1 March + 10 working days


def test_cutoff_clock_without_cutoff_is_refused() -> None:
    with pytest.raises(Invalid) as info:
        service_deadline(
            ServiceLevel(working_days=5, counts_from=ClockStart.CUTOFF), date(2026, 1, 5)
        )
    assert info.value.details[0].field == "cutoff"


def test_overdue_only_after_the_deadline_and_only_if_undecided() -> None:
    deadline = date(2026, 11, 24)
    assert not is_overdue(deadline, date(2026, 11, 24))
    assert is_overdue(deadline, datetime(2026, 11, 25, 0, 1))
    assert not is_overdue(deadline, date(2026, 11, 25), decided=True)


def test_working_days_between_counts_and_signs() -> None:
    assert working_days_between(date(2026, 11, 20), date(2026, 11, 24)) == 2
    assert working_days_between(date(2026, 11, 24), date(2026, 11, 20)) == -2


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2027, 12, 15), 12) == date(2028, 12, 15)


def test_holiday_in_the_wrong_year_is_refused() -> None:
    with pytest.raises(Invalid) as info:
        parse_holidays({"holidays": {2026: [date(2025, 12, 25)]}})
    assert info.value.details[0].rule == "date_in_year"


days = st.dates(min_value=date(2024, 6, 1), max_value=date(2028, 6, 1))
extra_holidays = st.frozensets(days, max_size=40)


@given(start=days, n=st.integers(min_value=0, max_value=300), holidays=extra_holidays)
def test_result_is_never_a_weekend_or_holiday(
    start: date, n: int, holidays: frozenset[date]
) -> None:
    hol = holidays | HOLIDAYS
    result = add_working_days(start, n, hol)
    assert is_working_day(result, hol)
    assert result.weekday() < 5 and result not in hol


@given(start=days, n=st.integers(min_value=0, max_value=300), holidays=extra_holidays)
def test_clock_is_monotone_in_n(start: date, n: int, holidays: frozenset[date]) -> None:
    later, earlier = add_working_days(start, n + 1, holidays), add_working_days(start, n, holidays)
    assert later >= earlier
    if n >= 1:  # n = 0 on a non-working day already rolls forward to day 1
        assert later > earlier


@given(start=days, n=st.integers(min_value=1, max_value=300), holidays=extra_holidays)
def test_exactly_n_working_days_elapse(start: date, n: int, holidays: frozenset[date]) -> None:
    assert working_days_between(start, add_working_days(start, n, holidays), holidays) == n
