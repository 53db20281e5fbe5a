"""Ledger arithmetic in milli-GPU-hours, thresholds, settlement and funding attribution."""

from decimal import Decimal as D

import pytest

from aifactory.domain.enums import LedgerKind as K
from aifactory.domain.enums import ResearchKind, UsageLevel
from aifactory.domain.ledger import (
    FundingSplit,
    LedgerEntry,
    LedgerState,
    apply,
    attribute,
    attribution_for,
    balance,
    charge_milli,
    check_adjust,
    check_charge,
    check_grant,
    check_release,
    check_reserve,
    crossed_levels,
    expiry_entry,
    fmt_hours,
    from_milli,
    settle,
    summarise,
    to_milli,
    usage_level,
)
from aifactory.errors import Conflict, Invalid, QuotaExceeded

H = 1000  # one GPU-hour in milli-GPU-hours


def state_of(*entries: LedgerEntry) -> LedgerState:
    return summarise(entries)


def test_units_convert_exactly() -> None:
    assert to_milli("1.5") == 1500
    assert to_milli(D("0.001")) == 1
    assert to_milli(50000) == 50_000_000
    assert from_milli(1500) == D("1.5")
    assert fmt_hours(1_234_500) == "1,234.5 GPU-h"


@pytest.mark.parametrize("bad", ["0.0001", "abc", "NaN"])
def test_units_refuse_sub_milli_or_non_numbers(bad: str) -> None:
    with pytest.raises(Invalid):
        to_milli(bad)


def test_balance_is_the_sum_and_totals_are_derived() -> None:
    entries = [
        LedgerEntry(K.GRANT, 100 * H),
        LedgerEntry(K.RESERVE, -30 * H),
        LedgerEntry(K.RELEASE, 30 * H),
        LedgerEntry(K.CHARGE, -25 * H),
        LedgerEntry(K.ADJUST, -10 * H),
        LedgerEntry(K.RESERVE, -5 * H),
    ]
    state = summarise(entries)
    assert balance(entries) == state.remaining == 60 * H
    assert (state.granted, state.used, state.reserved, state.expired) == (90 * H, 25 * H, 5 * H, 0)


def test_entry_sign_must_match_kind() -> None:
    with pytest.raises(Invalid, match="wrong sign"):
        LedgerEntry(K.RESERVE, 5)
    with pytest.raises(Invalid, match="0 GPU-h"):
        LedgerEntry(K.ADJUST, 0)


def test_reservation_larger_than_remaining_is_refused_with_the_numbers() -> None:
    state = state_of(LedgerEntry(K.GRANT, 100 * H), LedgerEntry(K.CHARGE, -70 * H))
    with pytest.raises(QuotaExceeded) as info:
        check_reserve(state, 40 * H)
    err = info.value
    assert "reservation of 40 GPU-h exceeds the 30 GPU-h remaining" in err.message
    assert "granted 100 GPU-h, used 70 GPU-h" in err.message
    assert err.extra["requested_gpu_hours"] == "40.000" and err.extra["remaining_milli"] == 30 * H
    assert check_reserve(state, 30 * H) == LedgerEntry(K.RESERVE, -30 * H)


@pytest.mark.parametrize("amount", [0, -1])
def test_non_positive_amounts_are_invalid(amount: int) -> None:
    state = state_of(LedgerEntry(K.GRANT, H))
    for check in (check_grant, check_reserve, check_release, check_charge):
        with pytest.raises(Invalid):
            check(state, amount)


def test_release_beyond_reserved_is_a_conflict() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H), LedgerEntry(K.RESERVE, -2 * H))
    with pytest.raises(Conflict, match="exceeds the 2 GPU-h reserved"):
        check_release(state, 3 * H)


def test_charge_beyond_remaining_is_a_hard_stop() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H))
    with pytest.raises(QuotaExceeded):
        check_charge(state, 11 * H)


def test_adjust_may_add_but_not_cut_below_zero() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H), LedgerEntry(K.RESERVE, -8 * H))
    assert check_adjust(state, 5 * H).amount == 5 * H
    assert check_adjust(state, -2 * H).amount == -2 * H
    with pytest.raises(QuotaExceeded, match="cut of 3 GPU-h"):
        check_adjust(state, -3 * H)


def test_expiry_takes_what_remains_and_leaves_reservations() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H), LedgerEntry(K.RESERVE, -4 * H))
    entry = expiry_entry(state)
    assert entry == LedgerEntry(K.EXPIRE, -6 * H)
    after = apply(state, entry)
    assert after.remaining == 0 and after.reserved == 4 * H
    assert expiry_entry(after) is None


def test_apply_refuses_an_expiry_of_the_wrong_size() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H))
    with pytest.raises(Conflict):
        apply(state, LedgerEntry(K.EXPIRE, -3 * H))


def test_settle_releases_and_charges_capped_at_remaining() -> None:
    state = state_of(LedgerEntry(K.GRANT, 10 * H), LedgerEntry(K.RESERVE, -4 * H))
    normal = settle(state, 4 * H, 3 * H)
    assert normal.entries == (LedgerEntry(K.RELEASE, 4 * H), LedgerEntry(K.CHARGE, -3 * H))
    assert normal.uncharged == 0
    overrun = settle(state, 4 * H, 12 * H)
    assert overrun.entries[-1] == LedgerEntry(K.CHARGE, -10 * H)
    assert overrun.uncharged == 2 * H


def test_charge_from_gpu_seconds_rounds_up() -> None:
    assert charge_milli(3600, D(1)) == 1000
    assert charge_milli(3600, D("1.5")) == 1500
    assert charge_milli(1, D(1)) == 1  # 0.277... milli rounds up
    with pytest.raises(Invalid):
        charge_milli(10, D(0))


def test_warning_at_80_percent_and_exhausted_at_100() -> None:
    grant = LedgerEntry(K.GRANT, 100 * H)
    assert usage_level(state_of(grant, LedgerEntry(K.CHARGE, -79 * H))) is UsageLevel.OK
    assert usage_level(state_of(grant, LedgerEntry(K.CHARGE, -80 * H))) is UsageLevel.WARNING
    assert usage_level(state_of(grant, LedgerEntry(K.CHARGE, -100 * H))) is UsageLevel.EXHAUSTED


def test_crossed_levels_reports_each_newly_reached_level_once() -> None:
    grant = LedgerEntry(K.GRANT, 100 * H)
    fresh = state_of(grant)
    warned = state_of(grant, LedgerEntry(K.CHARGE, -85 * H))
    done = state_of(grant, LedgerEntry(K.CHARGE, -100 * H))
    assert crossed_levels(fresh, warned) == (UsageLevel.WARNING,)
    assert crossed_levels(warned, done) == (UsageLevel.EXHAUSTED,)
    assert crossed_levels(fresh, done) == (UsageLevel.WARNING, UsageLevel.EXHAUSTED)
    assert crossed_levels(warned, warned) == ()


def test_funding_split_must_sum_to_one() -> None:
    with pytest.raises(Invalid) as info:
        FundingSplit(D("0.5"), D("0.4"))
    assert info.value.details[0].rule == "sums_to_one"
    with pytest.raises(Invalid):
        FundingSplit(D("1.5"), D("-0.5"))


def test_attribution_parts_sum_exactly() -> None:
    split = FundingSplit(D("0.5"), D("0.3"), D("0.2"))
    assert attribute(1001, split) == {"eu": 501, "national": 300, "commercial": 200}
    thirds = FundingSplit(D(1) / 3, D(1) / 3, 1 - 2 * (D(1) / 3))
    parts = attribute(100, thirds)
    assert sum(parts.values()) == 100
    assert sum(attribute(-100, thirds).values()) == -100


def test_commercial_work_is_attributed_to_commercial_funding() -> None:
    capacity = FundingSplit(D("0.5"), D("0.5"))
    assert attribution_for(ResearchKind.OPEN_RD, capacity) == capacity
    assert attribution_for(ResearchKind.COMMERCIAL, capacity).commercial == 1
