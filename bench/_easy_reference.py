"""A plain EASY-backfilling event loop: the yardstick ``bench_sim.py`` runs beside the engine.

Written the way one writes EASY in Python without tuning it: one heap with every arrival and
completion, a list of waiting jobs, and at every event the reservation of the first waiting
job computed from the running jobs sorted by predicted end (start + requested time). It follows
the engine's documented conventions (docs/simulator.md, "Event conventions") so the two give
the same start time for every job:

* events are ``(time, kind, seq, job)``; completions (kind 0) before arrivals (kind 1) at equal
  times, then insertion order;
* a job's units are free at its end time;
* the scheduler runs after every event;
* the reservation is the earliest predicted end at which the head fits, and the units spare
  then (counting every job predicted to end in that same second) may run past it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

__all__ = ["easy_reference"]

COMPLETION = 0
ARRIVAL = 1


class RefJob:
    """One job of the reference loop."""

    __slots__ = ("req", "run", "start", "submit", "width")

    def __init__(self, submit: int, run: int, req: int, width: int) -> None:
        self.submit = submit
        self.run = run
        self.req = req
        self.width = width
        self.start = -1


def _reservation(free: int, running: list[RefJob], width: int) -> tuple[int, int]:
    """(shadow time, spare units then) for a head job of ``width`` units."""
    ends = sorted((j.start + j.req, j.width) for j in running)
    avail = free
    for i, (end, units) in enumerate(ends):
        avail += units
        if avail >= width:
            for later_end, later_units in ends[i + 1 :]:
                if later_end != end:
                    break
                avail += later_units
            return end, avail - width
    raise ValueError(f"a job of {width} units never fits")


def easy_reference(jobs: Sequence[tuple[int, int, int, int]], capacity: int) -> list[int]:
    """Simulate EASY backfilling on one machine.

    Args:
        jobs: ``(submit, run, requested time, width)`` per job, sorted by submit time.
        capacity: Units of the machine.

    Returns:
        The start time of every job, in input order.
    """
    all_jobs = [RefJob(*j) for j in jobs]
    events: list[tuple[int, int, int, RefJob]] = []
    seq = 0
    for job in all_jobs:
        seq += 1
        events.append((job.submit, ARRIVAL, seq, job))
    heapq.heapify(events)
    waiting: list[RefJob] = []
    running: list[RefJob] = []
    free = capacity

    while events:
        now, kind, _, job = heapq.heappop(events)
        if kind == COMPLETION:
            running.remove(job)
            free += job.width
        else:
            waiting.append(job)

        started: list[RefJob] = []
        while waiting and waiting[0].width <= free:  # FCFS from the head
            head = waiting.pop(0)
            head.start = now
            free -= head.width
            running.append(head)
            started.append(head)
        if len(waiting) > 1 and free > 0:
            shadow, extra = _reservation(free, running, waiting[0].width)
            for candidate in waiting[1:]:
                if candidate.width > free:
                    continue
                if now + candidate.req <= shadow:
                    pass  # ends before the reservation
                elif candidate.width <= extra:
                    extra -= candidate.width  # uses only units the head does not need
                else:
                    continue
                candidate.start = now
                free -= candidate.width
                waiting.remove(candidate)
                running.append(candidate)
                started.append(candidate)
        for job in started:
            seq += 1
            heapq.heappush(events, (job.start + job.run, COMPLETION, seq, job))
    return [j.start for j in all_jobs]
