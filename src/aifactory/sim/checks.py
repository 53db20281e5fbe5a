"""Invariants checked after every run (the reservation invariant of EASY is checked live).

* every job that was placed finished, with ``end = start + run``;
* no job started before it was submitted;
* no site ever had more units busy than it has (a sweep over start/end events per site).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aifactory.sim.machine import InvariantViolation

if TYPE_CHECKING:
    from aifactory.sim.engine import SimResult

__all__ = ["check_invariants"]


def check_invariants(result: SimResult) -> None:
    """Raise :class:`InvariantViolation` on the first broken invariant."""
    deltas: list[list[tuple[int, int]]] = [[] for _ in result.sites]
    placed = 0
    for job in result.jobs:
        if job.site < 0:
            continue
        placed += 1
        if job.start < 0 or job.end != job.start + job.run:
            raise InvariantViolation(f"job {job.id} did not finish")
        if job.start < job.submit:
            raise InvariantViolation(f"job {job.id} started before it was submitted")
        events = deltas[job.site]
        events.append((job.start, job.width))
        events.append((job.end, -job.width))
    if placed + sum(result.rejected.values()) != len(result.jobs):
        raise InvariantViolation("some jobs were neither placed nor rejected")
    for site, events in zip(result.sites, deltas, strict=True):
        # Ends sort before starts at equal times: released units are free at the end time.
        events.sort(key=lambda e: (e[0], e[1]))
        busy = 0
        for time, delta in events:
            busy += delta
            if busy > site.machine.capacity:
                raise InvariantViolation(
                    f"site {site.spec.name} over capacity at t={time}: {busy} units busy"
                )
        if site.machine.queue:
            raise InvariantViolation(f"site {site.spec.name} ended with jobs still queued")
