"""Submitting one attempt exactly once, whatever sbatch answers (or fails to answer).

The attempt's Slurm job name (``aif-<job id>-<attempt>``) is the idempotency key: it is looked
up before every ``sbatch`` (for a hand-over pass's batch, in one call just before its
submissions start, see :meth:`Submitter.remember_lookup`). A failed submission is one of four
things (see :mod:`.failures`):

* **refused**: :class:`Invalid` is raised; the site agent fails the job and frees its budget.
* **unreachable**: nothing reached slurmctld; the :class:`BackendUnavailable` is raised as is
  (the site is marked unavailable) and the next pass looks the name up before submitting.
* **temporary**: Slurm said "not now"; retried at once with a short backoff, then deferred to
  later passes with a growing one, and refused with Slurm's words after :data:`GIVE_UP_S`.
* **ambiguous**: the request may have reached slurmctld (a time-out, a cut SSH connection).
  The name is looked up at once; if the job is not there yet, nothing is submitted again until
  the first ``sbatch`` cannot possibly still arrive (its own deadline plus a margin), and only a
  lookup after that which finds nothing lets a new ``sbatch`` go.

A deferral is a :func:`.failures.deferred` error: the attempt stays placed, the site stays
available. What is remembered between passes lives in memory; after a restart the name lookup
that precedes every ``sbatch`` still prevents a second job (only an ``sbatch`` of the dead
process still in flight at that very moment could slip through).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aifactory.errors import AIFactoryError, Invalid
from aifactory.executors.slurm.backends import SlurmBackend
from aifactory.executors.slurm.failures import Submission, deferred, submission_of
from aifactory.executors.slurm.models import SlurmJob
from aifactory.executors.slurm.script import RenderedScript

__all__ = [
    "DEFER_FIRST_S",
    "DEFER_MAX_S",
    "GIVE_UP_S",
    "LOOKUP_FRESH_S",
    "SETTLE_MARGIN_S",
    "TEMPORARY_BACKOFF_S",
    "Submitter",
]

#: Seconds, beyond the transport's own time-out, after which an unanswered sbatch is surely over.
SETTLE_MARGIN_S = 5.0
#: Pauses between the immediate retries of a temporary refusal, within one hand-over.
TEMPORARY_BACKOFF_S: tuple[float, ...] = (1.0, 2.0)
#: The first deferral to a later pass, doubling with each one up to :data:`DEFER_MAX_S`.
DEFER_FIRST_S = 5.0
DEFER_MAX_S = 120.0
#: A job Slurm has kept answering "not now" for this long is refused with Slurm's words.
GIVE_UP_S = 900.0
#: How long a batched lookup (:meth:`Submitter.remember_lookup`) stands for a submit's own.
LOOKUP_FRESH_S = 5.0
#: Memories of submissions nobody asked about for this long are dropped (cancelled jobs).
_FORGET_S = 3600.0


@dataclass
class _Unsettled:
    """What is known about one attempt's unfinished submission."""

    touched: float
    settles_at: float = 0.0  # ambiguous: until then, not finding the job proves nothing
    retry_at: float = 0.0  # temporary: no sbatch before then
    since: float | None = None  # first temporary refusal
    deferrals: int = 0
    last: str = ""


class Submitter:
    """Runs the submission protocol above for one site.

    Args:
        settle_after_s: Seconds from the start of an unanswered ``sbatch`` after which it can
            no longer reach slurmctld (its deadline plus a margin).
        clock: Monotonic seconds (tests pass a fake).
        sleep: Pauses between immediate retries (tests pass a fake).
    """

    def __init__(
        self,
        settle_after_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settle_after_s = settle_after_s
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._unsettled: dict[str, _Unsettled] = {}
        self._lookups: dict[str, tuple[float, SlurmJob | None]] = {}  # name -> (when, found)

    def submit(self, backend: SlurmBackend, rendered: RenderedScript, run_as: str | None) -> str:
        """Slurm's job id for this attempt, submitting it only if it is certainly not there.

        Raises:
            Invalid: Slurm refused the job, or kept answering "not now" for too long.
            BackendUnavailable: The site does not answer (site-wide), or the attempt is
                deferred (``extra["scope"] == "job"``, see :func:`.failures.deferred`).
        """
        name, now = rendered.name, self.clock()
        memo = self._memo(name, now)
        if memo is not None and now < memo.retry_at:
            raise deferred(f"{name}: {memo.last}; next try in {memo.retry_at - now:.0f} s",
                           memo.retry_at - now)  # fmt: skip
        existing = self._find(backend, name, now, memo)
        if existing is not None:
            self._forget(name)
            return existing.job_id
        if memo is not None and now < memo.settles_at:
            raise deferred(
                f"{name}: an unanswered sbatch may still reach Slurm; looking again in "
                f"{memo.settles_at - now:.0f} s",
                memo.settles_at - now,
            )
        backend.prepare(rendered, run_as)
        return self._sbatch(backend, rendered, run_as)

    def remember_lookup(self, names: Sequence[str], found: Mapping[str, SlurmJob]) -> None:
        """A batched lookup of ``names`` just made: the next submit of each uses it.

        Used once, within :data:`LOOKUP_FRESH_S`, and never for an attempt with an unsettled
        submission (its own lookup must come after that sbatch can no longer arrive).
        """
        now = self.clock()
        with self._lock:
            self._lookups = {k: v for k, v in self._lookups.items() if now - v[0] < LOOKUP_FRESH_S}
            self._lookups.update((name, (now, found.get(name))) for name in names)

    def _find(
        self, backend: SlurmBackend, name: str, now: float, memo: _Unsettled | None
    ) -> SlurmJob | None:
        with self._lock:
            looked = self._lookups.pop(name, None)
        if looked is not None and memo is None and now - looked[0] < LOOKUP_FRESH_S:
            return looked[1]
        return backend.find(name)

    def _sbatch(self, backend: SlurmBackend, rendered: RenderedScript, run_as: str | None) -> str:
        pauses = iter(TEMPORARY_BACKOFF_S)
        while True:
            started = self.clock()
            try:
                job_id = backend.submit(rendered, run_as)
            except Exception as exc:
                kind = submission_of(exc)
                if kind is Submission.REFUSED:
                    self._forget(rendered.name)
                    raise
                if kind is Submission.UNREACHABLE:
                    raise
                if kind is Submission.AMBIGUOUS:
                    return self._settle(backend, rendered.name, started, exc)
                pause = next(pauses, None)  # temporary: again at once, a few times
                if pause is None:
                    raise self._defer(rendered.name, exc) from exc
                self.sleep(pause)
            else:
                self._forget(rendered.name)
                return job_id

    def _settle(self, backend: SlurmBackend, name: str, started: float, exc: Exception) -> str:
        """After an unclear sbatch, the job's name tells whether it was submitted."""
        with self._lock:
            memo = self._unsettled.setdefault(name, _Unsettled(touched=self.clock()))
            memo.settles_at = started + self.settle_after_s
            memo.last = _words(exc)
        found = backend.find(name)  # unreachable now: the next pass looks again
        if found is not None:
            self._forget(name)
            return found.job_id
        wait = memo.settles_at - self.clock()
        raise deferred(
            f"{name}: sbatch's outcome is unknown ({memo.last}) and the job is not there yet; "
            f"looking again in {max(wait, 0):.0f} s",
            wait,
        ) from exc

    def _defer(self, name: str, exc: Exception) -> AIFactoryError:
        """A temporary refusal that outlasted the immediate retries: later, or never."""
        now = self.clock()
        with self._lock:
            memo = self._unsettled.setdefault(name, _Unsettled(touched=now))
            memo.since = now if memo.since is None else memo.since
            memo.deferrals += 1
            memo.last = _words(exc)
            waited = now - memo.since
            if waited >= GIVE_UP_S:
                del self._unsettled[name]
                return Invalid(
                    f"Slurm kept refusing it for {waited:.0f} s: {memo.last}",
                    extra={"submission": Submission.TEMPORARY.value},
                )
            wait = min(DEFER_FIRST_S * 2 ** (memo.deferrals - 1), DEFER_MAX_S)
            memo.retry_at = now + wait
        return deferred(f"{name}: {memo.last}; next try in {wait:.0f} s", wait)

    def _memo(self, name: str, now: float) -> _Unsettled | None:
        with self._lock:
            for key in [k for k, m in self._unsettled.items() if now - m.touched > _FORGET_S]:
                del self._unsettled[key]
            memo = self._unsettled.get(name)
            if memo is not None:
                memo.touched = now
            return memo

    def _forget(self, name: str) -> None:
        with self._lock:
            self._unsettled.pop(name, None)


def _words(exc: Exception) -> str:
    return exc.message if isinstance(exc, AIFactoryError) else f"{type(exc).__name__}: {exc}"
