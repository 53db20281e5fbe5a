"""Conservative backfilling: every queued job holds a reservation, and a job may start early only
if it delays no reservation at all (Mu'alem & Feitelson, 2001).

The availability profile is a step function kept across events: ``times[i]`` is where segment
``i`` starts and ``free[i]`` the units free from then until ``times[i + 1]`` (the last segment
runs forever). A new job is reserved at its earliest fit without moving anyone; when a job ends
before its requested time, reservations are *compressed*: in reservation order, each job is
taken out and put back at its earliest fit, which is never later than where it was.
"""

from __future__ import annotations

from bisect import bisect_right

from aifactory.sim.machine import InvariantViolation, Machine
from aifactory.sim.model import Job

__all__ = ["Conservative", "Profile"]


class Profile:
    """Free units over time, from ``now`` to infinity."""

    __slots__ = ("free", "times")

    def __init__(self, now: int, free: int) -> None:
        self.times = [now]
        self.free = [free]

    def _split(self, t: int) -> int:
        """Index of the segment starting exactly at ``t``, creating it if needed."""
        i = bisect_right(self.times, t) - 1
        if self.times[i] != t:
            i += 1
            self.times.insert(i, t)
            self.free.insert(i, self.free[i - 1])
        return i

    def add(self, start: int, end: int, delta: int) -> None:
        """Add ``delta`` free units over ``[start, end)``."""
        if end <= start:
            return
        i = self._split(start)
        j = self._split(end)
        free = self.free
        for k in range(i, j):
            free[k] += delta

    def advance(self, now: int) -> None:
        """Forget the past: merge every segment that ended by ``now`` into the first one."""
        i = bisect_right(self.times, now) - 1
        if i > 0:
            del self.times[:i]
            del self.free[:i]
        self.times[0] = now

    def earliest(self, width: int, duration: int) -> int:
        """Earliest time from the profile's start when ``width`` units are free for
        ``duration`` seconds."""
        times, free = self.times, self.free
        n = len(times)
        k = 0
        while True:
            while free[k] < width:
                k += 1
                if k == n:
                    raise InvariantViolation(f"width {width} never fits in the profile")
            start = times[k]
            end = start + duration
            j = k + 1
            while j < n and times[j] < end and free[j] >= width:
                j += 1
            if j == n or times[j] >= end:
                return start
            k = j


class Conservative:
    """Conservative backfilling with compression on early completion."""

    name = "conservative"

    def __init__(self) -> None:
        self._profile: Profile | None = None
        self._reservation: dict[int, int] = {}  # id(job) -> reserved start
        self._compress = False

    def _get_profile(self, machine: Machine, now: int) -> Profile:
        if self._profile is None:
            self._profile = Profile(now, machine.capacity)
        self._profile.advance(now)
        return self._profile

    def on_arrival(self, machine: Machine, job: Job, now: int) -> None:
        profile = self._get_profile(machine, now)
        start = profile.earliest(job.width, job.req)
        profile.add(start, start + job.req, -job.width)
        self._reservation[id(job)] = start

    def on_completion(self, machine: Machine, job: Job, now: int) -> None:
        profile = self._get_profile(machine, now)
        predicted = job.start + job.req
        if predicted > now:
            profile.add(now, predicted, job.width)
            self._compress = True

    def schedule(self, machine: Machine, now: int) -> list[Job]:
        profile = self._get_profile(machine, now)
        reservation = self._reservation
        if self._compress:
            self._compress = False
            machine.queue.sort(key=lambda j: reservation[id(j)])
            for job in machine.queue:
                old = reservation[id(job)]
                profile.add(old, old + job.req, job.width)
                new = profile.earliest(job.width, job.req)
                if new > old:
                    raise InvariantViolation(f"compression delayed job {job.id}")
                profile.add(new, new + job.req, -job.width)
                reservation[id(job)] = new
        started: list[Job] = []
        for job in machine.queue:
            # A reservation due now may still wait for another job ending this same second
            # whose completion event has not been handled yet; it starts on that event.
            if reservation[id(job)] <= now and job.width <= machine.free:
                del reservation[id(job)]
                machine.start(job, now)
                started.append(job)
        if started:
            machine.queue = [j for j in machine.queue if j.start < 0]
        return started
