"""EASY's rule, shared by the live broker and the simulator."""

from __future__ import annotations

import pytest

from aifactory.broker.backfill import Reservation, allows, shadow


def test_the_reservation_is_the_first_predicted_end_that_frees_enough() -> None:
    running = [(100.0, 1, 2), (200.0, 2, 4), (200.0, 3, 1), (300.0, 4, 1)]
    # 1 free now; at 100 s 3 are free, at 200 s 8 (both jobs ending then count).
    assert shadow(1, running, 3) == Reservation(100.0, 0)
    assert shadow(1, running, 6) == Reservation(200.0, 2)
    with pytest.raises(ValueError, match="never fit"):
        shadow(1, running, 10)


def test_a_job_may_start_beside_the_reservation_only_if_it_cannot_delay_it() -> None:
    reserved = Reservation(start=1000.0, extra=2)
    assert allows(reserved, now=0.0, length=1000.0, width=8) == 2  # ends in time: spares kept
    assert allows(reserved, now=0.0, length=1001.0, width=2) == 0  # runs on the spare GPUs
    assert allows(reserved, now=0.0, length=1001.0, width=3) is None  # takes a reserved GPU
    assert allows(None, now=0.0, length=1e9, width=8) == 0  # no one is next in line
