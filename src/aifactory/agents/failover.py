"""Failover: a site's jobs move to other entitled sites when it drains, retires or goes dark.

Run by each site agent under its site's lease (``agents/site_agent.py``), as three steps:

* ``unreachable`` (the scheduler does not answer): the outage is noted with its start
  (``site_outages``, so a restarted controller keeps counting); once it has lasted
  ``failover_grace_s``, the site's placed and queued jobs go back to pending (a queued one as
  a new attempt; the old one is remembered as stale) and each running *managed* job (a
  ``checkpoint_dir`` and a retry policy that still retries ``node_failed``) ends that attempt
  as ``node_failed`` and is retried. The broker places them at another entitled site: the
  dark site is not a candidate (``services/candidates.py`` marks it not operational).
* ``answered`` (in each full pass; ``reached`` ends the outage once a whole pass went
  through): stale attempts are cancelled at the site (never two runs of one job), and a site
  whose factory is not ``operational`` takes no new work: its placed jobs and those still
  queued in its scheduler move (cancelled there first), and when it is ``retired`` its running
  managed jobs move too. Jobs running at a draining site finish there.
* ``replicate``: the checkpoints of the site's running managed jobs are copied to the control
  plane's checkpoint store after each save (``services/checkpoints.py``); a retry placed at
  another site has the last copy staged into its checkpoint directory (``agents/handover.py``).

Every move is a compare-and-set on the job (state, backend id, version) in the agent's fenced
transaction, so a second controller, a retry of the same step or a crash halfway leaves one
consistent outcome, and the next pass finishes what is left.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.agents.handover import WithJob
from aifactory.agents.recording import fail_over_running, move_elsewhere, retry_wanted
from aifactory.db.engine import Database
from aifactory.db.models import Factory, Job, JobAttempt, SiteOutage, StaleAttempt
from aifactory.db.types import utcnow
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.registry import FactoryStatus
from aifactory.errors import BackendUnavailable, NotFound
from aifactory.executors import ExecJob, ExecState, Executor
from aifactory.executors.checkpoints import access
from aifactory.services import checkpoints

log = logging.getLogger(__name__)
#: Default seconds a site may be unreachable before its jobs move (``failover_grace_s``).
FAILOVER_GRACE_S = 60.0
_WAITING = (JobState.PLACED, JobState.SUBMITTED, JobState.QUEUED)
_MOVABLE = (*_WAITING, JobState.RUNNING)
Fence = Callable[[Session], None]
#: (job id, state, backend id, attempt)
_Row = tuple[int, JobState, str | None, int]


class Failover:
    """The failover steps of one site agent (see the module docstring)."""

    #: Seconds between looks at the factory's status and stale attempts while it answers.
    check_s = 1.0
    #: Seconds between looks at running managed jobs' checkpoint directories.
    checkpoint_poll_s = 2.0

    def __init__(
        self,
        db: Database,
        factory_id: int,
        name: str,
        fence: Fence,
        with_job: WithJob,
        exec_job_of: Callable[[Session, Job], ExecJob],
        *,
        grace_s: float = FAILOVER_GRACE_S,
        checkpoint_store: Path | None = None,
    ) -> None:
        self.db, self.factory_id, self.name = db, factory_id, name
        self.fence, self.with_job, self.exec_job_of = fence, with_job, exec_job_of
        self.grace = timedelta(seconds=grace_s)
        self.store = checkpoint_store
        self._checked = self._unreachable_checked = self._copied = 0.0
        self._outage: bool | None = None  # an outage row may exist (None: not looked yet)
        self._managed: dict[int, str | None] = {}  # job id -> checkpoint_dir of a managed spec

    # --- the site does not answer ---

    def unreachable(self) -> None:
        """Note the outage; past the grace, move the site's jobs (database only)."""
        if time.monotonic() < self._unreachable_checked + self.check_s:
            return
        self._unreachable_checked = time.monotonic()
        now = utcnow()
        with self._session() as s:
            outage = s.get(SiteOutage, self.factory_id)
            if outage is None:
                s.add(SiteOutage(factory_id=self.factory_id, since=now))
            since = outage.since if outage is not None else now
        self._outage = True
        if now - since < self.grace:
            return
        why = (
            f"{self.name} has not answered since {since:%Y-%m-%d %H:%M:%S} UTC "
            f"(failover after {self.grace.total_seconds():g} s)"
        )
        for job_id, state, backend_id, _ in self._jobs(_MOVABLE):
            expect = _still(state, backend_id)
            if state != JobState.RUNNING:
                self.with_job(job_id, expect, partial(move_elsewhere, self.name, why, True, now))
            elif self._is_managed(job_id):
                act = partial(fail_over_running, self.name, why, since, False, now)
                self.with_job(job_id, _and_retries(expect), act)

    # --- the site answers ---

    def reached(self) -> None:
        """The scheduler answered a whole pass: the outage, if one was noted, is over."""
        if self._outage is False:
            return
        with self._session() as s:
            outage = s.get(SiteOutage, self.factory_id)
            if outage is not None:
                s.delete(outage)
        self._outage = False

    def answered(self, executor: Executor) -> None:
        """Cancel stale attempts, and move work off a site that takes none (a full pass; the
        executor's ``BackendUnavailable`` stops it: the site does not answer after all)."""
        if time.monotonic() < self._checked + self.check_s:
            return
        self._checked = time.monotonic()
        with self.db.session() as s:
            status = s.scalar(select(Factory.status).where(Factory.id == self.factory_id))
            stale = s.execute(
                select(StaleAttempt.id, StaleAttempt.backend_id).where(
                    StaleAttempt.factory_id == self.factory_id,
                    StaleAttempt.cancelled_at.is_(None),
                )
            ).all()
        for row_id, backend_id in stale:
            self._cancel_stale(executor, row_id, backend_id)
        if status is None or status == FactoryStatus.OPERATIONAL:
            return
        self._drain(executor, str(status))

    def _drain(self, executor: Executor, status: str) -> None:
        """Move what has not started (and, at a retired site, what runs and can resume)."""
        retired = status == FactoryStatus.RETIRED  # left service: running managed jobs move too
        why = f"{self.name} is {status} and takes no new work"
        states = (*_WAITING, JobState.RUNNING) if retired else _WAITING
        rows = self._jobs(states)
        handed = [b for _, st, b, _ in rows if b and st in (JobState.SUBMITTED, JobState.QUEUED)]
        there = executor.poll(handed) if handed else {}
        now = utcnow()
        for job_id, state, backend_id, _ in rows:
            expect = _still(state, backend_id)
            if state == JobState.PLACED:
                self.with_job(job_id, expect, partial(move_elsewhere, self.name, why, False, now))
                continue
            if state != JobState.RUNNING:
                seen = there.get(backend_id or "")
                if seen is not None and seen.state != ExecState.QUEUED:
                    continue  # it started (or ended): the poll records it, it finishes here
                if self._cancel(executor, backend_id):
                    act = partial(move_elsewhere, self.name, why, False, now)
                    self.with_job(job_id, expect, act)
            elif self._is_managed(job_id) and self._cancel(executor, backend_id):
                act = partial(fail_over_running, self.name, why, now, True, now)
                self.with_job(job_id, _and_retries(expect), act)

    def _cancel(self, executor: Executor, backend_id: str | None) -> bool:
        """Cancel an attempt at the site; whether it is gone there (an unknown one is)."""
        if not backend_id:
            return True
        try:
            executor.cancel(backend_id)
        except NotFound:
            return True
        except BackendUnavailable:
            raise
        except Exception:
            log.exception(
                "%s: could not cancel %s; the next pass tries again", self.name, backend_id
            )
            return False
        return True

    def _cancel_stale(self, executor: Executor, row_id: int, backend_id: str) -> None:
        if not self._cancel(executor, backend_id):
            return
        with self._session() as s:
            row = s.get(StaleAttempt, row_id)
            if row is not None and row.cancelled_at is None:
                row.cancelled_at = utcnow()
        log.info("%s: cancelled %s, an attempt that moved elsewhere", self.name, backend_id)

    # --- checkpoints ---

    def replicate(self, executor: Executor) -> None:
        """Copy changed checkpoints of the site's running managed jobs to the store, and
        remove the copies of jobs that ended here."""
        site = access(executor)
        if self.store is None or time.monotonic() < self._copied + self.checkpoint_poll_s:
            return
        self._copied = time.monotonic()
        self._forget_ended(self.store)
        if site is None:
            return
        todo: list[tuple[checkpoints.Running, checkpoints.Known]] = []
        with self.db.session() as s:
            live = [job_id for job_id, _, _, _ in self._jobs((JobState.RUNNING,), s)]
            self._managed = {i: self._managed[i] for i in live if i in self._managed}
            self._learn(s, [i for i in live if i not in self._managed])
            for job_id in live:
                try:
                    found = self._running(s, job_id)
                except Exception as exc:  # per job: its spec or site account went wrong
                    log.warning("%s: job %s: no checkpoint copy: %s", self.name, job_id, exc)
                    continue
                if found is not None:
                    todo.append((found, checkpoints.known(s, job_id)))
        for running, before in todo:
            try:
                if checkpoints.replicate(
                    self._session, self.store, site, self.factory_id, running, before
                ):
                    log.debug("%s: replicated checkpoint of job %s", self.name, running.job_id)
            except Exception as exc:  # per job: the next look tries again
                log.warning(
                    "%s: checkpoint of job %s not copied: %s", self.name, running.job_id, exc
                )

    def _forget_ended(self, store: Path) -> None:
        """Remove the store's copies of jobs that ended here (whatever site took them, and
        whether or not this site's executor reads checkpoints): none will be staged again."""
        with self.db.session() as s:
            done = checkpoints.ended(s, self.factory_id)
        for job_id in done:
            try:
                checkpoints.forget(self._session, store, job_id)
            except Exception as exc:  # per job: the next look tries again
                log.warning("%s: copy of ended job %s not removed: %s", self.name, job_id, exc)

    def _running(self, s: Session, job_id: int) -> checkpoints.Running | None:
        """A running managed job's current attempt, as its checkpoint copy needs it."""
        directory = self._managed_dir(s, job_id)
        job = s.get(Job, job_id) if directory is not None else None
        if directory is None or job is None or not _retries(job):
            return None
        log_path = s.scalar(
            select(JobAttempt.stdout_path).where(
                JobAttempt.job_id == job_id, JobAttempt.attempt == job.attempt
            )
        )
        return checkpoints.Running(
            job_id, job.attempt, self.exec_job_of(s, job), directory, log_path
        )

    # --- reading ---

    def _jobs(self, states: tuple[JobState, ...], s: Session | None = None) -> list[_Row]:
        query = select(Job.id, Job.state, Job.backend_id, Job.attempt).where(
            Job.factory_id == self.factory_id, Job.state.in_(states)
        )
        if s is not None:
            return [(i, JobState(st), b, a) for i, st, b, a in s.execute(query)]
        with self.db.session() as session:
            return [(i, JobState(st), b, a) for i, st, b, a in session.execute(query)]

    def _is_managed(self, job_id: int) -> bool:
        with self.db.session() as s:
            return self._managed_dir(s, job_id) is not None

    def _managed_dir(self, s: Session, job_id: int) -> str | None:
        """The job's checkpoint_dir if its spec has one (specs never change: read once)."""
        if job_id not in self._managed:
            self._learn(s, [job_id])
        return self._managed.get(job_id)

    def _learn(self, s: Session, job_ids: list[int]) -> None:
        """Read the checkpoint_dir of jobs not seen before, many per statement."""
        for chunk in range(0, len(job_ids), 500):
            part = job_ids[chunk : chunk + 500]
            for job_id, raw in s.execute(select(Job.id, Job.spec).where(Job.id.in_(part))):
                try:
                    self._managed[job_id] = JobSpec.model_validate(raw).checkpoint_dir
                except ValidationError:
                    self._managed[job_id] = None

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self.db.session() as s:
            self.fence(s)
            yield s


def _still(state: JobState, backend_id: str | None) -> Callable[[Job], bool]:
    """Still in the state it was read in, under the same attempt at the site."""
    return lambda j: j.state == state and j.backend_id == backend_id


def _and_retries(expect: Callable[[Job], bool]) -> Callable[[Job], bool]:
    return lambda j: expect(j) and _retries(j)


def _retries(job: Job) -> bool:
    """A managed job: a node failure of this attempt is retried by its policy."""
    return retry_wanted(job, JobState.NODE_FAILED)


def outage_since(s: Session, factory_id: int) -> datetime | None:
    """Since when the factory's scheduler has not answered (None: it answers)."""
    row = s.get(SiteOutage, factory_id)
    return row.since if row is not None else None
