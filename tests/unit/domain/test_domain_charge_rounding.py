"""Charge rounding: GPUs x elapsed rounded up to the GPU-second, then x factor rounded up to the
milli-GPU-hour, exactly (no float error on exact multiples)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest

from aifactory.domain.ledger import charge_milli, usage_milli, used_gpu_seconds
from aifactory.errors import Invalid

US = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("gpus", "elapsed", "gpu_seconds"),
    [
        (1, timedelta(seconds=0.3), 1),  # a short job is never free
        (1, US, 1),
        (1, timedelta(0), 0),
        (0, timedelta(hours=5), 0),
        (1, timedelta(seconds=1), 1),  # exact: not one more
        (1, timedelta(seconds=1) + US, 2),
        (1, timedelta(seconds=2) - US, 2),
        (8, timedelta(hours=1), 28_800),
        (8, timedelta(hours=1) + US, 28_801),  # 28 800.000 008 GPU-s
        (8, timedelta(hours=1) - US, 28_800),  # 28 799.999 992 GPU-s
        (4, timedelta(microseconds=250_000), 1),  # exactly 1 GPU-second
        (4, timedelta(microseconds=250_001), 2),
        (3, timedelta(seconds=0.1), 1),  # 0.3 GPU-s; a float product would be 0.30000000000000004
        (7, timedelta(seconds=-5), 0),  # clock skew: a negative span is no usage
    ],
)
def test_gpu_seconds_round_up_to_the_next_whole_second(
    gpus: int, elapsed: timedelta, gpu_seconds: int
) -> None:
    assert used_gpu_seconds(gpus, elapsed) == gpu_seconds


def test_float_seconds_that_are_not_exact_do_not_overcharge() -> None:
    # 0.1 + 0.2 != 0.3 in floats; as a timedelta it is 300 000 microseconds, exactly.
    elapsed = timedelta(seconds=0.1) + timedelta(seconds=0.2)
    assert used_gpu_seconds(10, elapsed) == 3
    assert used_gpu_seconds(10, timedelta(seconds=0.1 + 0.2)) == 3


@pytest.mark.parametrize(
    ("gpus", "elapsed", "factor", "milli"),
    [
        (1, timedelta(seconds=0.3), D("1.0"), 1),  # 1 GPU-s = 0.277... milli, rounded up
        (8, timedelta(hours=1), D("1.0"), 8_000),  # exact multiples stay exact
        (8, timedelta(hours=1), D("0.5"), 4_000),
        (8, timedelta(hours=1), D("1.2"), 9_600),
        (8, timedelta(hours=1), D(str(1.2)), 9_600),  # the factor as the agent reads it (a float)
        (8, timedelta(hours=1) + US, D("1.0"), 8_001),  # one GPU-second more is charged
        (1, timedelta(seconds=3.6), D("1.0"), 2),  # 4 GPU-s = 1.11... milli, rounded up
        (2, timedelta(seconds=9), D("0.2"), 1),  # 18 GPU-s x 0.2 = 3.6 GPU-s = exactly 1 milli
        (2, timedelta(seconds=9) + US, D("0.2"), 2),  # 19 GPU-s x 0.2 = 3.8 GPU-s: 1.05 milli
        (1, timedelta(seconds=3599), D("1.0"), 1_000),  # 999.7 milli rounded up
        (0, timedelta(hours=1), D("1.0"), 0),
    ],
)
def test_usage_charge_rounds_up_at_both_steps(
    gpus: int, elapsed: timedelta, factor: D, milli: int
) -> None:
    assert usage_milli(gpus, elapsed, factor) == milli


def test_huge_jobs_are_exact() -> None:
    # 10 000 GPUs for a year, and a year and a microsecond: integers all the way.
    year = timedelta(days=365)
    assert usage_milli(10_000, year, D("1.0")) == 10_000 * 365 * 24 * 1000
    assert usage_milli(10_000, year + US, D("1.0")) == 10_000 * 365 * 24 * 1000 + 1
    # Beyond Decimal's 28 digits of precision the rounding still goes up, never down.
    gpu_seconds = 3600 * 10**30 + 1
    assert charge_milli(gpu_seconds, D(1)) == 10**33 + 1
    assert charge_milli(3600 * 10**30, D(1)) == 10**33


def test_charge_milli_rounds_up_and_is_exact_for_decimal_factors() -> None:
    assert charge_milli(3600, D("1.5")) == 1500
    assert charge_milli(3600, D("0.333")) == 333
    assert charge_milli(1, D("0.001")) == 1  # tiny, still charged
    assert charge_milli(0, D("2")) == 0


@pytest.mark.parametrize("factor", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_bad_factors_are_refused(factor: D) -> None:
    with pytest.raises(Invalid):
        charge_milli(10, factor)


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(Invalid):
        charge_milli(-1, D(1))
    with pytest.raises(Invalid):
        used_gpu_seconds(-1, timedelta(seconds=1))
