"""Local scheduling policies: FCFS, EASY backfilling, EASY with shortest-requested-first
backfilling, and conservative backfilling (in :mod:`aifactory.sim.conservative`).

A policy decides which queued jobs of one machine start *now*; the engine calls it once per
timestamp after every completion and arrival at that timestamp has been applied. Schedulers see
requested times only, never actual run times.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from aifactory.errors import Invalid
from aifactory.sim.machine import InvariantViolation, Machine
from aifactory.sim.model import Job

__all__ = ["LOCAL_POLICIES", "LocalPolicy", "make_policy"]


class LocalPolicy(Protocol):
    """A site's batch scheduler."""

    name: str

    def on_arrival(self, machine: Machine, job: Job, now: int) -> None:
        """A job joined ``machine.queue`` (already appended)."""

    def on_completion(self, machine: Machine, job: Job, now: int) -> None:
        """A job finished (its units are already released)."""

    def schedule(self, machine: Machine, now: int) -> list[Job]:
        """Start the jobs that should start now and return them."""


def _start_head(machine: Machine, now: int, started: list[Job]) -> None:
    """Start jobs from the head of the queue while they fit (plain FCFS)."""
    queue = machine.queue
    count = 0
    for job in queue:
        if job.width > machine.free:
            break
        machine.start(job, now)
        started.append(job)
        count += 1
    if count:
        del queue[:count]


class Fcfs:
    """First come, first served: the head blocks everyone behind it."""

    name = "fcfs"

    def on_arrival(self, machine: Machine, job: Job, now: int) -> None:
        return None

    def on_completion(self, machine: Machine, job: Job, now: int) -> None:
        return None

    def schedule(self, machine: Machine, now: int) -> list[Job]:
        started: list[Job] = []
        _start_head(machine, now, started)
        return started


def _fcfs_order(queue: list[Job]) -> list[Job]:
    return queue[1:]


def _shortest_requested_first(queue: list[Job]) -> list[Job]:
    return sorted(queue[1:], key=lambda j: j.req)  # stable: ties stay in FCFS order


class Easy:
    """EASY backfilling: the first queued job gets a reservation computed from requested times;
    any other job may start now if it fits and does not delay that reservation."""

    def __init__(self, name: str, order: Callable[[list[Job]], list[Job]]) -> None:
        self.name = name
        self._order = order
        self._reserved: Job | None = None
        self._reserved_at = 0

    def on_arrival(self, machine: Machine, job: Job, now: int) -> None:
        return None

    def on_completion(self, machine: Machine, job: Job, now: int) -> None:
        return None

    def schedule(self, machine: Machine, now: int) -> list[Job]:
        started: list[Job] = []
        _start_head(machine, now, started)
        self._check_reserved_start(started, now)
        queue = machine.queue
        if not queue:
            return started
        head = queue[0]
        shadow, extra = machine.shadow(head.width)
        self._reserve(head, shadow)
        if machine.free == 0 or len(queue) == 1:
            return started
        backfilled = self._backfill(machine, now, shadow, extra)
        if backfilled:
            machine.queue = [j for j in queue if j.start < 0]
            started.extend(backfilled)
        return started

    def _backfill(self, machine: Machine, now: int, shadow: int, extra: int) -> list[Job]:
        free = machine.free
        out: list[Job] = []
        for job in self._order(machine.queue):
            width = job.width
            if width > free:
                continue
            if now + job.req <= shadow:
                pass  # ends before the reservation: cannot delay it
            elif width <= extra:
                extra -= width  # runs past the reservation on units the head does not need
            else:
                continue
            machine.start(job, now)
            out.append(job)
            free -= width
            if free == 0:
                break
        return out

    def _reserve(self, head: Job, shadow: int) -> None:
        # Invariant: the reservation of the same head job can only move earlier.
        if self._reserved is head and shadow > self._reserved_at:
            raise InvariantViolation(
                f"reservation of job {head.id} moved from {self._reserved_at} to {shadow}"
            )
        self._reserved, self._reserved_at = head, shadow

    def _check_reserved_start(self, started: list[Job], now: int) -> None:
        reserved = self._reserved
        if reserved is not None and reserved.start >= 0:
            if reserved.start > self._reserved_at:
                raise InvariantViolation(
                    f"job {reserved.id} reserved for {self._reserved_at} started at {now}"
                )
            self._reserved = None


def _conservative() -> LocalPolicy:
    from aifactory.sim.conservative import Conservative

    return Conservative()


LOCAL_POLICIES: dict[str, Callable[[], LocalPolicy]] = {
    "fcfs": Fcfs,
    "easy": lambda: Easy("easy", _fcfs_order),
    "easy-sjbf": lambda: Easy("easy-sjbf", _shortest_requested_first),
    "conservative": _conservative,
}


def make_policy(name: str) -> LocalPolicy:
    """A fresh scheduler instance for one site.

    Raises:
        Invalid: Unknown policy name; the message lists the valid names.
    """
    try:
        factory = LOCAL_POLICIES[name]
    except KeyError:
        valid = ", ".join(LOCAL_POLICIES)
        raise Invalid.field(
            "policy", "unknown", f"unknown scheduling policy {name!r}; valid: {valid}"
        ) from None
    return factory()
