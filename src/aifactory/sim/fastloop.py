"""The fast path of the engine: one site, FCFS or EASY (FCFS or shortest-first backfilling).

Same conventions and the same decisions as the general engine driving
:class:`aifactory.sim.policies.Easy` (``tests/unit/sim/test_sim_fastloop.py`` checks that start
times are identical), but with the per-job data in flat lists and the work per event cut down:

* Jobs are indices into columns (submit, run, requested time, width), not objects.
* Completions live in a heap of plain integers, ``end << shift | seq``: one comparison per
  sift instead of a tuple comparison; ``seq`` (start order) keeps equal ends in insertion order.
  Arrivals are not in the heap at all: the next one is ``submit[next]``, taken after any
  completion at the same second.
* An arrival behind a non-empty queue changes nothing for the jobs already waiting: free units,
  running jobs and the head are the same, so the reservation is the same, and the last pass
  left every waiting job unable to start (the test only gets stricter as time passes). Only
  the new job is tested. A full pass (head, reservation, backfill walk) runs after completions.
* The reservation is :func:`aifactory.broker.backfill.shadow_at`, the live broker's rule, over
  the running jobs kept sorted by predicted end; the backfill test is
  :func:`aifactory.broker.backfill.allows` written out inline, because it runs once per waiting
  job per pass.
* The event loop is one function with the arrival and the release written inline: a Python
  call per event costs as much as the work it would wrap.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections.abc import Callable
from heapq import heappop, heappush
from itertools import islice
from operator import gt

import numpy as np
import numpy.typing as npt

from aifactory.broker import backfill
from aifactory.sim.machine import InvariantViolation
from aifactory.sim.model import Job

__all__ = ["FAST_POLICIES", "run_fast"]

#: Policy name -> backfill order (None: no backfilling).
FAST_POLICIES: dict[str, str | None] = {"fcfs": None, "easy": "fcfs", "easy-sjbf": "sjbf"}

Progress = Callable[[int, int], None]
I64 = npt.NDArray[np.int64]
Series = tuple[I64, I64, I64]


class _Site:
    """State of the one machine, in plain lists and ints."""

    __slots__ = (
        "by_seq", "capacity", "extra", "free", "head_id", "heap", "min_width", "queue", "req",
        "reserved_at", "run", "running", "shadow", "shift", "stale", "start", "waiting", "width",
    )  # fmt: skip

    def __init__(self, capacity: int, jobs: list[Job]) -> None:
        n = len(jobs)
        self.capacity = capacity
        self.free = capacity
        self.req = [j.req for j in jobs]
        self.run = [j.run for j in jobs]
        self.width = [j.width for j in jobs]
        self.start = [-1] * n
        self.queue: list[int] = []
        self.running: list[tuple[int, int, int]] = []  # (predicted end, job, width), sorted
        self.heap: list[int] = []  # completions: end << shift | seq
        self.by_seq: list[int] = []  # seq -> job
        self.shift = max(n.bit_length() + 1, 20)
        self.shadow = 0  # reservation of queue[0] while the queue is not empty
        self.extra = 0  # units spare then, less those of jobs backfilled past it since
        self.head_id = -1  # the job the reservation belongs to
        # The reservation is renewed only when a backfill test needs it: after a release that
        # leaves every waiting job too wide to backfill, nothing reads it.
        self.stale = True
        self.reserved_at = 0
        # Waiting jobs per width, and a lower bound of the narrowest: a backfill walk is
        # skipped when no waiting job is narrow enough for the free units (a third of them
        # on SDSC-SP2).
        self.waiting = [0] * (capacity + 1)
        self.min_width = capacity + 1

    def enqueue(self, j: int) -> None:
        """Job ``j`` joins the tail of the queue."""
        w = self.width[j]
        self.queue.append(j)
        self.waiting[w] += 1
        if w < self.min_width:
            self.min_width = w

    def narrow_enough(self) -> bool:
        """Whether some waiting job is no wider than the free units (exact)."""
        waiting, free, w = self.waiting, self.free, self.min_width
        while w <= free and not waiting[w]:
            w += 1
        self.min_width = w  # still a lower bound: the queue only lost jobs of these widths
        return w <= free

    def launch(self, j: int, now: int) -> None:
        """Start job ``j`` now and schedule its completion."""
        w = self.width[j]
        self.free -= w
        self.start[j] = now  # the caller removes ``j`` from the queue if it was there
        insort(self.running, (now + self.req[j], j, w))
        heappush(self.heap, (now + self.run[j]) << self.shift | len(self.by_seq))
        self.by_seq.append(j)

    def reserve(self) -> None:
        """The head's reservation (the broker's rule); it may only move earlier."""
        head = self.queue[0]
        try:
            shadow, extra = backfill.shadow_at(self.free, self.running, self.width[head])
        except ValueError:
            raise InvariantViolation(
                f"a job of width {self.width[head]} can never fit in {self.capacity}"
            ) from None
        if head == self.head_id and shadow > self.reserved_at:
            raise InvariantViolation(
                f"reservation of job index {head} moved from {self.reserved_at} to {shadow}"
            )
        self.head_id = head
        self.shadow = self.reserved_at = shadow
        self.extra = extra
        self.stale = False


def _start_head(s: _Site, now: int) -> None:
    """Plain FCFS from the head; the reserved job must start no later than its reservation."""
    queue, width = s.queue, s.width
    count = 0
    for j in queue:
        if width[j] > s.free:
            break
        if j == s.head_id:
            if now > s.reserved_at:
                raise InvariantViolation(
                    f"job index {j} reserved for {s.reserved_at} started at {now}"
                )
            s.head_id = -1
        s.launch(j, now)
        s.waiting[width[j]] -= 1
        count += 1
    if count:
        del queue[:count]


def _full_pass(s: _Site, now: int, order: str | None) -> None:
    """Start what fits at the head, renew the reservation, then backfill."""
    _start_head(s, now)
    queue = s.queue
    if not queue or order is None:
        return
    if not s.narrow_enough():  # the head is too wide, or it would have started
        s.stale = True
        return
    s.reserve()
    width, req = s.width, s.req
    free, extra, room = s.free, s.extra, s.shadow - now
    candidates = queue[1:] if order == "fcfs" else sorted(queue[1:], key=req.__getitem__)
    picked: list[int] = []
    for j in candidates:
        w = width[j]
        if w > free:
            continue
        if req[j] <= room:
            pass  # ends before the reservation: cannot delay it
        elif w <= extra:
            extra -= w  # runs past the reservation on units the head does not need
        else:
            continue
        picked.append(j)
        free -= w
        if free == 0:
            break
    s.extra = extra
    waiting = s.waiting
    for j in picked:
        s.launch(j, now)
        waiting[width[j]] -= 1
    if len(picked) < 8:
        for j in picked:  # usually one or two: cheaper than rebuilding a long queue
            queue.remove(j)
    else:
        start = s.start
        s.queue = [j for j in queue if start[j] < 0]


def _loop(s: _Site, submit: list[int], order: str | None, progress: Progress | None) -> None:
    n = len(submit)
    shift = s.shift
    mask = (1 << shift) - 1
    heap, by_seq, running = s.heap, s.by_seq, s.running
    start, req, width = s.start, s.req, s.width
    i = done = 0
    while True:
        if heap and (i >= n or heap[0] >> shift <= submit[i]):
            key = heappop(heap)
            now = key >> shift
            j = by_seq[key & mask]
            w = width[j]
            del running[bisect_left(running, (start[j] + req[j], j, w))]
            s.free += w
            done += 1
            if s.queue:
                _full_pass(s, now, order)
        elif i < n:
            now = submit[i]
            j = i
            i += 1
            w = width[j]
            if not s.queue:
                if w <= s.free:
                    s.launch(j, now)
                else:
                    s.enqueue(j)
                    s.stale = True
            elif order is None or w > s.free:
                s.enqueue(j)  # nothing else can change: see the module docstring
            else:
                if s.stale:
                    s.reserve()
                if now + req[j] <= s.shadow:
                    s.launch(j, now)  # ends before the reservation: cannot delay it
                elif w <= s.extra:
                    s.extra -= w  # runs past it on units the head does not need
                    s.launch(j, now)
                else:
                    s.enqueue(j)
        else:
            break
        if progress is not None and (i + done) % 20_000 == 0:
            progress(done, n)
    if progress is not None:
        progress(done, n)


def run_fast(
    jobs: list[Job], capacity: int, policy: str, progress: Progress | None = None
) -> Series:
    """Replay ``jobs`` on one machine; fills each job's ``start``, ``end`` and ``site`` (0).

    Args:
        jobs: Jobs in submit order (checked as :func:`aifactory.sim.engine.simulate` does).
        capacity: Units of the machine.
        policy: A key of :data:`FAST_POLICIES`.
        progress: Called now and then with (jobs finished, jobs in all).

    Returns:
        The time series ``(times, busy units, queue length)``, one sample per event time.

    Raises:
        Invalid: A job has width < 1, run time < 0 or beyond its requested time, or the jobs
            are not sorted by submit time.
        InvariantViolation: A scheduling invariant broke.
    """
    site = _Site(capacity, jobs)
    submit = [j.submit for j in jobs]
    _validate(jobs, submit, site)
    if max(site.width, default=0) > capacity:
        raise InvariantViolation(f"a job of width {max(site.width)} can never fit in {capacity}")
    _loop(site, submit, FAST_POLICIES[policy], progress)
    if site.queue or site.running:
        raise InvariantViolation("jobs were left queued or running at the end")
    for job, begin in zip(jobs, site.start, strict=True):
        job.start = begin
        job.end = begin + job.run
        job.site = 0
    return _series(site, submit)


def _validate(jobs: list[Job], submit: list[int], s: _Site) -> None:
    """The engine's input rules, tested column-wise in C; the slow test names the job."""
    if not jobs:
        return
    if (
        min(s.width) < 1
        or min(s.run) < 0
        or any(map(gt, s.run, s.req))
        or any(map(gt, submit, islice(submit, 1, None)))
    ):
        from aifactory.sim.engine import validate_jobs

        validate_jobs(jobs)


def _series(s: _Site, submit: list[int]) -> Series:
    """The sample the general engine records after every event, rebuilt from the results.

    Its sample at ``t`` is the state after the last event at ``t``, when every submission,
    start and end at or before ``t`` has happened: so busy units and queue length at each
    event time are counts of those, and the event times are the submit and end times.
    """
    sub = _ints(submit)
    by_start = _ints(s.by_seq)  # start order: starts are never earlier than the one before
    beg = _ints(s.start)
    end = beg + _ints(s.run)
    wid = _ints(s.width)
    by_end = np.argsort(end, kind="stable")
    # Two sorted runs: the stable sort (timsort) merges them in linear time.
    merged = np.sort(np.concatenate((sub, end[by_end])), kind="stable")
    times = merged[np.concatenate(([True], merged[1:] != merged[:-1]))]
    started_w = np.concatenate(([0], np.cumsum(wid[by_start])))
    ended_w = np.concatenate(([0], np.cumsum(wid[by_end])))
    n_started = np.searchsorted(beg[by_start], times, side="right")
    n_ended = np.searchsorted(end[by_end], times, side="right")
    busy = started_w[n_started] - ended_w[n_ended]
    queued = np.searchsorted(sub, times, side="right") - n_started
    return times, busy, queued


def _ints(values: list[int]) -> I64:
    return np.frombuffer(array("q", values), dtype=np.int64)
