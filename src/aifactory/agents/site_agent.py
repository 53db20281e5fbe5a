"""A site agent: reconciles one factory's jobs between the control plane and its scheduler.

Each ``tick`` cancels what users asked to cancel, hands placed jobs to the executor and records
what the executor reports, charging finished attempts to the ledger. Every step is idempotent:
``submit`` is keyed by (job, attempt), so a crash between handing a job over and recording it
makes the next tick hand it over again and get the same backend id back, never a second run.
While the scheduler cannot be reached the site is marked unavailable (the broker stops placing
there) and the agent backs off exponentially; nothing is lost, the next tick resumes. Past the
failover grace, or when the factory drains or retires, the site's jobs move elsewhere, and the
checkpoints of its running managed jobs are copied off it meanwhile (``agents/failover.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from aifactory.agents.failover import FAILOVER_GRACE_S, Failover
from aifactory.agents.handover import HandOver, JobStep
from aifactory.agents.leases import LeaseHandle, LeaseLost
from aifactory.agents.recording import (
    STATE,
    apply_status,
    give_up_lost,
    mark_lost,
)
from aifactory.db.engine import Database
from aifactory.db.models import Job, SiteStatus
from aifactory.db.types import utcnow
from aifactory.db.wake import BROKER, wake
from aifactory.domain.jobs import JobState
from aifactory.errors import BackendUnavailable, NotFound
from aifactory.executors import Capability, ExecUsage, Executor
from aifactory.executors.estimates import StartEstimator
from aifactory.services import jobs as job_service
from aifactory.services import queue_state, site_accounts

log = logging.getLogger(__name__)
_LIVE = (JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING)
# Polled like live jobs: a lost one may reappear, or be settled by accounting.
_WATCHED = (*_LIVE, JobState.LOST)
#: Seconds a job may stay lost (no scheduler record, no finished accounting) before it fails.
LOST_GRACE_S = 600.0
ACCOUNT_SYNC_S = 15.0
CONTACT_NOTE_S = 30.0
#: Seconds between reads of the scheduler's own start estimates (``squeue --start``).
ESTIMATES_S = 15.0
#: A placed or live job as a full pass reads it: id, state, backend id, cancel asked, lost since.
_Work = tuple[int, JobState, str | None, bool, datetime | None]


class SiteAgent:
    """Reconciles the jobs of one factory with one executor, while it holds the site's lease."""

    def __init__(
        self,
        db: Database,
        factory_id: int,
        name: str,
        executor: Executor,
        lease: LeaseHandle,
        *,
        lost_grace_s: float = LOST_GRACE_S,
        failover_grace_s: float = FAILOVER_GRACE_S,
        checkpoint_store: Path | None = None,
    ) -> None:
        self.db, self.factory_id, self.name = db, factory_id, name
        self.lease = lease
        self.lost_grace = timedelta(seconds=lost_grace_s)
        self._lost_since: dict[str, datetime] = {}  # backend id -> when it went missing
        self.handover = HandOver(name, factory_id, executor, checkpoint_store)
        self.failover = Failover(
            db,
            factory_id,
            name,
            lease.fence,
            self._with_job,
            self.handover.exec_job_of,
            grace_s=failover_grace_s,
            checkpoint_store=checkpoint_store,
        )
        self.backoff_s = 0.0
        self._retry_at = 0.0
        self._accounts_due = 0.0
        self._contact_noted = 0.0
        self._live: dict[str, tuple[int, JobState]] = {}  # backend id -> (job id, last state)
        self._synced_token: int | None = None
        self._estimates_due = 0.0

    @property
    def executor(self) -> Executor:
        """The site's executor (replaceable: tests and tools swap in their own)."""
        return self.handover.executor

    @executor.setter
    def executor(self, executor: Executor) -> None:
        self.handover.executor = executor

    @property
    def backlog(self) -> bool:
        """More placed jobs wait than one pass hands over: the loop comes back at once."""
        return self.handover.backlog

    @property
    def has_live(self) -> bool:
        """Whether jobs run here that need polling (the only work without a wake-up)."""
        return bool(self._live)

    def tick(self, full: bool = True, *, poll: bool = True) -> bool:
        """One pass; returns False while the site is unavailable.

        A full pass cancels, hands over and re-reads the live jobs from the database; a short
        one only asks the executor about the jobs known to be live and records what changed.
        ``poll=False`` leaves the live jobs alone (the runner polls on its own clock, so a
        pass woken by a submission hands it over without first polling every job).
        ``LeaseLost`` propagates: the caller stops acting until it holds the lease again.
        """
        if time.monotonic() < self._retry_at:
            self.failover.unreachable()  # past the grace, its jobs move (agents/failover.py)
            return False
        full = full or self.lease.token != self._synced_token  # new holder: look at everything
        try:
            if full:
                self._sync_accounts()
                self.failover.answered(self.executor)
                work = self._read_work()
                self._load_live(work)
                self._cancel_requested(work)
                if any(state == JobState.PLACED for _, state, _, _, _ in work):
                    self._submit_placed()
                self._synced_token = self.lease.token
            if poll:
                self._poll_live()
                self.failover.replicate(self.executor)
            self._record_estimates()
        except BackendUnavailable as exc:
            self._unavailable(str(exc))
            self.failover.unreachable()
            return False
        self.failover.reached()
        self._available()
        return True

    # --- steps ---

    def _sync_accounts(self) -> None:
        """Site accounts follow the ledger: one per project, GrpTRESMins = its raw GPU budget,
        its users exactly the project members' own logins at this site."""
        ensure = getattr(self.executor, "ensure_account", None)
        if ensure is None or time.monotonic() < self._accounts_due:
            return
        with self.db.session() as s:
            budgets = site_accounts.project_budgets(s, self.factory_id)
            logins = site_accounts.member_logins(s, self.factory_id, budgets)
        for project, hours in sorted(budgets.items()):
            ensure(project, hours, logins[project])
        self._accounts_due = time.monotonic() + ACCOUNT_SYNC_S

    def _read_work(self) -> list[_Work]:
        """The site's placed and live jobs, in one statement: (id, state, backend id, cancel
        requested, lost since)."""
        with self.db.session() as s:
            rows = s.execute(
                select(
                    Job.id, Job.state, Job.backend_id, Job.cancel_requested, Job.lost_since
                ).where(
                    Job.factory_id == self.factory_id, Job.state.in_((JobState.PLACED, *_WATCHED))
                )
            ).all()
        return [(i, JobState(st), b, bool(c), lost) for i, st, b, c, lost in rows]

    def _cancel_requested(self, work: list[_Work]) -> None:
        placed = [i for i, st, _, cancel, _ in work if cancel and st == JobState.PLACED]
        backend_ids = [b for _, st, b, cancel, _ in work if cancel and st in _LIVE]
        for job_id in placed:
            self._with_job(job_id, lambda j: j.state == JobState.PLACED, self._cancel_placed)
        for backend_id in backend_ids:
            if backend_id:
                try:
                    self.executor.cancel(backend_id)
                except NotFound:
                    log.warning("%s: cancel of unknown %s", self.name, backend_id)

    def _cancel_placed(self, s: Session, job: Job) -> None:
        job_service.release_reservation(s, job, self.name)
        job_service.move(s, job, JobState.CANCELLED, "cancelled before start", utcnow())

    def _submit_placed(self) -> None:
        """Hand placed jobs over, several at a time, each recorded once (see handover.py)."""
        handed = self.handover.run(self.db.session, self._with_job, self._with_jobs)
        for backend_id, job_id in handed:
            self._live[backend_id] = (job_id, JobState.SUBMITTED)

    def _load_live(self, work: list[_Work]) -> None:
        live = [(i, st, b, lost) for i, st, b, _, lost in work if b and st in _WATCHED]
        self._live = {b: (i, st) for i, st, b, _ in live}
        self._lost_since = {b: lost for _, _, b, lost in live if lost is not None}

    def _poll_live(self) -> None:
        """Ask the executor about live jobs; touch the database only for those that changed.

        A job the executor leaves out of its answer is one the scheduler no longer reports
        (for Slurm: the controller forgot it and accounting has no finished record). It
        becomes ``lost``; it goes back to queued/running if it reappears, is settled like any
        other end when accounting reports one, and fails after ``lost_grace`` otherwise. A
        poll that fails (the site does not answer) marks nothing lost.
        """
        if not self._live:
            return
        statuses = self.executor.poll(list(self._live))
        changed: list[tuple[str, JobState]] = []
        steps: list[JobStep] = []
        for backend_id, (job_id, known) in list(self._live.items()):
            status = statuses.get(backend_id)
            if status is None:
                self._missing(backend_id, job_id, known)
                continue
            target = STATE[status.state]
            if target == known:
                continue
            # Ask the executor before the transaction: no scheduler call holds a database lock.
            usage = self._usage(backend_id) if target not in _LIVE else None
            apply = partial(apply_status, self.name, status, usage)
            steps.append((job_id, _live_as(backend_id), apply))
            changed.append((backend_id, target))
        # Every change of the poll in one commit (a burst moves hundreds to queued at once).
        for (backend_id, target), ok in zip(changed, self._with_jobs(steps), strict=True):
            if ok:
                self._lost_since.pop(backend_id, None)
            if ok and target in _LIVE:
                self._live[backend_id] = (self._live[backend_id][0], target)
            elif ok:
                self._live.pop(backend_id, None)

    def _usage(self, backend_id: str) -> ExecUsage | None:
        try:
            return self.executor.usage(backend_id)
        except NotFound:  # gone between poll and now: the recorded times are charged
            return None

    def _missing(self, backend_id: str, job_id: int, known: JobState) -> None:
        """The scheduler does not report this job: mark it lost, or give up after the grace."""
        now = utcnow()
        if known != JobState.LOST:
            if self._with_job(job_id, _live_as(backend_id), partial(mark_lost, now)):
                self._live[backend_id] = (job_id, JobState.LOST)
                self._lost_since[backend_id] = now
            return
        since = self._lost_since.setdefault(backend_id, now)
        if now - since < self.lost_grace:
            return
        grace = self.lost_grace

        def due(job: Job) -> bool:
            lost = job.lost_since
            return _live_as(backend_id)(job) and (lost is None or now - lost >= grace)

        if self._with_job(job_id, due, partial(give_up_lost, self.name, now)):
            self._live.pop(backend_id, None)
            self._lost_since.pop(backend_id, None)

    def _with_job(
        self, job_id: int, expect: Callable[[Job], bool], act: Callable[[Session, Job], None]
    ) -> bool:
        """Act on one job in its own fenced transaction, if it is still as expected.

        The write is a compare-and-set on the job's version: if another controller (or an
        overlapping restart) changed the job since it was read, nothing is written. Errors stay
        with their job; only the loss of the lease stops the pass.
        """
        try:
            with self.db.session() as s:
                self.lease.fence(s)
                job = s.get(Job, job_id)
                if job is None or not expect(job):
                    return False
                act(s, job)
            return True
        except (LeaseLost, BackendUnavailable):
            raise  # stops the pass: the lease is gone, or the scheduler does not answer
        except (StaleDataError, IntegrityError) as exc:
            log.info("%s: job %s changed under this agent (%s); next pass", self.name, job_id, exc)
        except Exception:
            log.exception("%s: job %s could not be reconciled; the others go on", self.name, job_id)
        return False

    def _with_jobs(self, steps: Sequence[JobStep]) -> list[bool]:
        """:meth:`_with_job` for several jobs in one fenced transaction (hand-overs).

        One commit instead of one per job: on SQLite each write transaction queues for the one
        writer, behind the API's submissions. If any job's step fails, that transaction is
        rolled back and every job is redone in its own, so errors still stay with their job.
        """
        if len(steps) < 2:
            return [self._with_job(*step) for step in steps]
        try:
            done = []
            with self.db.session() as s:
                self.lease.fence(s)
                ids = [job_id for job_id, _, _ in steps]
                jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids)))}
                for job_id, expect, act in steps:
                    job = jobs.get(job_id)
                    ok = job is not None and expect(job)
                    if job is not None and ok:
                        act(s, job)
                    done.append(ok)
            return done
        except (LeaseLost, BackendUnavailable):
            raise
        except Exception as exc:  # one of them: find it by doing each on its own
            log.info("%s: %d jobs recorded one by one (%s)", self.name, len(steps), exc)
            return [self._with_job(*step) for step in steps]

    def _record_estimates(self) -> None:
        """The scheduler's expected starts per partition, for ``jobs why`` and placement in
        every API process (backends with the ``start_estimates`` capability), every
        ``ESTIMATES_S``. A scheduler that does not answer makes the site unavailable."""
        executor = self.executor
        if (
            Capability.START_ESTIMATES not in executor.capabilities
            or not isinstance(executor, StartEstimator)
            or time.monotonic() < self._estimates_due
        ):
            return
        self._estimates_due = time.monotonic() + ESTIMATES_S
        with self.db.session() as s:
            partitions = queue_state.site_partitions(s, self.factory_id)
        try:
            estimates = executor.start_estimates(list(partitions))
        except BackendUnavailable:
            raise
        except Exception:  # an odd answer costs the estimates, never the agent's pass
            log.exception("%s: start estimates could not be read", self.name)
            return
        with self.db.session() as s:
            self.lease.fence(s)
            queue_state.save_estimates(s, self.factory_id, partitions, estimates, utcnow())

    # --- availability ---

    def _unavailable(self, why: str) -> None:
        self.backoff_s = min(max(self.backoff_s * 2, 0.5), 30.0)
        self._retry_at = time.monotonic() + self.backoff_s
        log.warning("%s unavailable (%s); retrying in %.1f s", self.name, why, self.backoff_s)
        self._set_status(False, why)

    def _available(self) -> None:
        """Note the contact (at most every half minute) and announce a site that came back."""
        if self.backoff_s or time.monotonic() >= self._contact_noted + CONTACT_NOTE_S:
            back = bool(self.backoff_s)
            self.backoff_s = 0.0
            self._set_status(True, "", contact=True)
            self._contact_noted = time.monotonic()
            if back:
                with self.db.session() as s:
                    wake(s, BROKER)  # jobs waiting for this site may be placed now

    def _set_status(self, available: bool, reason: str, contact: bool = False) -> None:
        with self.db.session() as s:
            row = s.get(SiteStatus, self.factory_id)
            if row is None:
                row = SiteStatus(factory_id=self.factory_id)
                s.add(row)
            row.available, row.reason, row.checked_at = available, reason, utcnow()
            if contact:
                row.last_contact_at = row.checked_at


def _live_as(backend_id: str) -> Callable[[Job], bool]:
    """Still live (or lost) under this backend id (not re-placed, not already ended)."""
    return lambda j: j.state in _WATCHED and j.backend_id == backend_id
