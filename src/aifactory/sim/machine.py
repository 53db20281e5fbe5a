"""Resource state of one site: free units, the wait queue and the running set.

The running set is a list sorted by *predicted* end (start + requested time), so a backfilling
scheduler finds the reservation time of the first queued job by walking it once; insertion and
removal are bisections plus a ``memmove``, never a scan of every running job.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from aifactory.broker import backfill
from aifactory.sim.model import Job

__all__ = ["InvariantViolation", "Machine"]


class InvariantViolation(RuntimeError):
    """A scheduling invariant broke: a simulator bug, never a user error."""


class Machine:
    """Free capacity, queue and running set of one site."""

    __slots__ = ("busy_end_sum", "capacity", "free", "queue", "queued_work", "running")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.free = capacity
        self.queue: list[Job] = []
        # (predicted end, python id of the job, width): unique and totally ordered.
        self.running: list[tuple[int, int, int]] = []
        self.queued_work = 0  # sum of width * requested time over queued jobs
        self.busy_end_sum = 0  # sum of width * predicted end over running jobs

    def enqueue(self, job: Job) -> None:
        """Add an arriving job at the tail of the queue."""
        self.queue.append(job)
        self.queued_work += job.width * job.req

    def start(self, job: Job, now: int) -> None:
        """Start a queued job now; the caller removes it from ``queue``."""
        if job.width > self.free:
            raise InvariantViolation(
                f"job {job.id} needs {job.width} units at t={now}, only {self.free} free"
            )
        if now < job.submit:
            raise InvariantViolation(f"job {job.id} starts at {now} before submit {job.submit}")
        job.start = now
        job.end = now + job.run
        self.free -= job.width
        predicted = now + job.req
        insort(self.running, (predicted, id(job), job.width))
        self.queued_work -= job.width * job.req
        self.busy_end_sum += job.width * predicted

    def finish(self, job: Job) -> None:
        """Release a job's units at its end time."""
        predicted = job.start + job.req
        key = (predicted, id(job), job.width)
        index = bisect_left(self.running, key)
        if index >= len(self.running) or self.running[index] != key:
            raise InvariantViolation(f"job {job.id} finished but was not running")
        del self.running[index]
        self.free += job.width
        self.busy_end_sum -= job.width * predicted

    def shadow(self, width: int) -> tuple[int, int]:
        """When ``width`` units will be free by predicted ends, and the spare units then.

        Returns:
            ``(shadow_time, extra)``: the earliest predicted end at which ``width`` units are
            free, and how many more than ``width`` are free at that moment (the broker's rule,
            ``broker.backfill.shadow``).
        """
        try:
            reservation = backfill.shadow(self.free, self.running, width)
        except ValueError:
            raise InvariantViolation(
                f"a job of width {width} can never fit in {self.capacity}"
            ) from None
        return int(reservation.start), reservation.extra

    def estimate_start(self, width: int, now: int) -> int:
        """Fluid start estimate for a new job: now if it fits with nothing queued, else after
        the queued and remaining running work has drained over the whole machine."""
        if width <= self.free and not self.queue:
            return now
        busy = self.capacity - self.free
        remaining = self.busy_end_sum - now * busy
        return now + (self.queued_work + remaining) // max(self.capacity, 1)
