"""A site agent: reconciles one factory's jobs between the control plane and its scheduler.

Each ``tick`` cancels what users asked to cancel, hands placed jobs to the executor and records
what the executor reports, charging finished attempts to the ledger. Every step is idempotent:
``submit`` is keyed by (job, attempt), so a crash between handing a job over and recording it
makes the next tick hand it over again and get the same backend id back, never a second run.
While the scheduler cannot be reached the site is marked unavailable (the broker stops placing
there) and the agent backs off exponentially; nothing is lost, the next tick resumes.
"""

from __future__ import annotations

import getpass
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Job, JobAttempt, Partition, SiteStatus
from aifactory.db.types import utcnow
from aifactory.domain.jobs import RETRYABLE, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.ledger import charge_milli
from aifactory.errors import AIFactoryError, BackendUnavailable, NotFound
from aifactory.executors import ExecJob, ExecState, ExecStatus, Executor
from aifactory.services import jobs as job_service
from aifactory.services import ledger

log = logging.getLogger(__name__)
_STATE = {
    ExecState.QUEUED: JobState.QUEUED,
    ExecState.RUNNING: JobState.RUNNING,
    ExecState.COMPLETED: JobState.COMPLETED,
    ExecState.FAILED: JobState.FAILED,
    ExecState.CANCELLED: JobState.CANCELLED,
    ExecState.TIMED_OUT: JobState.TIMED_OUT,
    ExecState.NODE_FAILED: JobState.NODE_FAILED,
}
_LIVE = (JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING)
ACCOUNT_SYNC_S = 15.0
HANDOVER_THREADS = 4


class SiteAgent:
    """Reconciles the jobs of one factory with one executor."""

    def __init__(self, db: Database, factory_id: int, name: str, executor: Executor) -> None:
        self.db, self.factory_id, self.name = db, factory_id, name
        self.executor = executor
        self.backoff_s = 0.0
        self._retry_at = 0.0
        self._accounts_due = 0.0
        self.service_user = getpass.getuser()

    def tick(self) -> bool:
        """One reconciliation pass; returns False while the site is unavailable."""
        if time.monotonic() < self._retry_at:
            return False
        try:
            self._sync_accounts()
            self._cancel_requested()
            self._submit_placed()
            self._poll_live()
        except BackendUnavailable as exc:
            self._unavailable(str(exc))
            return False
        self._available()
        return True

    # --- steps ---

    def _sync_accounts(self) -> None:
        """Site accounts follow the ledger: one per project, GrpTRESMins = its raw GPU budget."""
        ensure = getattr(self.executor, "ensure_account", None)
        if ensure is None or time.monotonic() < self._accounts_due:
            return
        with self.db.session() as s:
            rows = s.execute(
                select(Allocation, Partition.charge_factor)
                .join(Partition, Partition.id == Allocation.partition_id)
                .where(Allocation.factory_id == self.factory_id)
            ).all()
            budgets: dict[str, float] = {}
            for alloc, factor in rows:
                state = ledger.state(s, alloc.id)
                raw_hours = (state.granted - state.expired) / 1000 / factor
                budgets[alloc.project_code] = budgets.get(alloc.project_code, 0.0) + raw_hours
        for project, hours in sorted(budgets.items()):
            ensure(project, hours, [self.service_user])
        self._accounts_due = time.monotonic() + ACCOUNT_SYNC_S

    def _cancel_requested(self) -> None:
        with self.db.session() as s:
            for job in self._jobs(s, JobState.PLACED, cancel=True):
                job_service.release_reservation(s, job, self.name)
                job_service.move(s, job, JobState.CANCELLED, "cancelled before start", utcnow())
            backend_ids = [j.backend_id for j in self._jobs(s, *_LIVE, cancel=True)]
        for backend_id in backend_ids:
            if backend_id:
                try:
                    self.executor.cancel(backend_id)
                except NotFound:
                    log.warning("%s: cancel of unknown %s", self.name, backend_id)

    def _submit_placed(self) -> None:
        """Hand placed jobs over, several at a time (sbatch waits on the controller, not on us)."""
        with self.db.session() as s:
            todo = [(j.id, j.attempt, self._exec_job(s, j)) for j in self._jobs(s, JobState.PLACED)]
        if not todo:
            return
        with ThreadPoolExecutor(max_workers=HANDOVER_THREADS) as pool:
            outcomes = list(pool.map(self._hand_over, [spec for _, _, spec in todo]))
        for (job_id, attempt, spec), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, BackendUnavailable):
                raise outcome
            with self.db.session() as s:
                job = s.get_one(Job, job_id, with_for_update=True)
                if job.state == JobState.PLACED and job.attempt == attempt:
                    self._record_handover(s, job, spec, outcome)

    def _hand_over(self, spec: ExecJob) -> str | AIFactoryError:
        """Submit one attempt (idempotent per job and attempt); errors are returned, not raised."""
        try:
            return self.executor.submit(spec)
        except AIFactoryError as exc:
            return exc

    def _record_handover(
        self, s: Session, job: Job, spec: ExecJob, outcome: str | AIFactoryError
    ) -> None:
        if isinstance(outcome, AIFactoryError):  # the scheduler refused it: say why, free budget
            job_service.release_reservation(s, job, self.name)
            job_service.move(
                s, job, JobState.FAILED, f"{self.name} refused it: {outcome}", utcnow()
            )
            return
        logs = self.executor.log_paths_for(spec) or (None, None)
        job.backend_id = outcome
        s.add(
            JobAttempt(
                job_id=job.id,
                attempt=job.attempt,
                factory_id=self.factory_id,
                partition_id=job.partition_id or 0,
                backend_id=outcome,
                state=JobState.SUBMITTED,
                stdout_path=logs[0],
                stderr_path=logs[1],
            )
        )
        job_service.move(s, job, JobState.SUBMITTED, f"handed to {self.name}", utcnow())

    def _poll_live(self) -> None:
        with self.db.session() as s:
            live = {j.backend_id: j.id for j in self._jobs(s, *_LIVE) if j.backend_id}
        if not live:
            return
        statuses = self.executor.poll(list(live))
        for backend_id, status in statuses.items():
            with self.db.session() as s:
                job = s.get_one(Job, live[backend_id], with_for_update=True)
                if job.state in _LIVE and job.backend_id == backend_id:
                    self._apply(s, job, status)

    # --- recording ---

    def _apply(self, s: Session, job: Job, status: ExecStatus) -> None:
        target = _STATE[status.state]
        attempt = next(a for a in job.attempts if a.attempt == job.attempt)
        if status.started_at and job.started_at is None:
            job.started_at = _dt(status.started_at)
        attempt.started_at = attempt.started_at or job.started_at
        if target == JobState(job.state):
            return
        if target in (JobState.QUEUED, JobState.RUNNING):
            if not (target == JobState.QUEUED and job.state == JobState.RUNNING):
                job_service.move(s, job, target, status.message, utcnow())
            attempt.state = job.state
            return
        self._finish(s, job, attempt, target, status)

    def _finish(
        self, s: Session, job: Job, attempt: JobAttempt, target: JobState, status: ExecStatus
    ) -> None:
        usage = self.executor.usage(job.backend_id or "")
        elapsed = usage.elapsed_s if usage else 0.0
        factor = Decimal(str(s.get_one(Partition, job.partition_id).charge_factor))
        used = charge_milli(round(job.gpus * elapsed), factor) if job.gpus else 0
        if job.allocation_id is not None:
            ledger.settle(
                s, job.allocation_id, job.reserved_milli, used, self.name, f"job:{job.id}"
            )
        job.reserved_milli, job.charged_milli = 0, job.charged_milli + used
        job.exit_code, job.ended_at = status.exit_code, _dt(status.ended_at) or utcnow()
        attempt.state, attempt.exit_code, attempt.elapsed_s = target, status.exit_code, elapsed
        attempt.ended_at, attempt.charged_milli, attempt.message = (
            job.ended_at,
            used,
            status.message,
        )
        reason = status.message or f"exit code {status.exit_code}"
        job_service.move(s, job, target, reason, utcnow())
        if self._retry(job, target):
            job.attempt += 1
            job.backend_id, job.exit_code, job.ended_at = None, None, None
            job_service.move(s, job, JobState.PENDING, f"retry: attempt {job.attempt}", utcnow())

    def _retry(self, job: Job, target: JobState) -> bool:
        spec = JobSpec.model_validate(job.spec)
        return (
            target in RETRYABLE
            and not job.cancel_requested
            and str(target) in spec.retry.on
            and job.attempt < spec.retry.max_attempts
        )

    def _exec_job(self, s: Session, job: Job) -> ExecJob:
        spec = JobSpec.model_validate(job.spec)
        partition = s.get_one(Partition, job.partition_id).name if job.partition_id else None
        env = dict(spec.environment)
        env.update(
            {
                "AIF_JOB_ID": str(job.id),
                "AIF_ATTEMPT": str(job.attempt),
                "AIF_PROJECT": job.project_code,
            }
        )
        if spec.checkpoint_dir:
            env["AIF_CHECKPOINT_DIR"] = spec.checkpoint_dir
        return ExecJob(
            job_id=job.exec_id,
            attempt=job.attempt,
            argv=spec.argv(),
            script=spec.script,
            env=env,
            workdir=spec.workdir,
            nodes=spec.resources.nodes,
            gpus_per_node=spec.resources.gpus_per_node,
            time_limit_s=float(job.time_limit_s),
            project=job.project_code,
            partition=partition,
            launcher=spec.launcher,
        )

    def _jobs(self, s: Session, *states: JobState, cancel: bool = False) -> list[Job]:
        query = select(Job).where(Job.factory_id == self.factory_id, Job.state.in_(states))
        if cancel:
            query = query.where(Job.cancel_requested.is_(True))
        return list(s.scalars(query.order_by(Job.id)))

    # --- availability ---

    def _unavailable(self, why: str) -> None:
        self.backoff_s = min(max(self.backoff_s * 2, 0.5), 30.0)
        self._retry_at = time.monotonic() + self.backoff_s
        log.warning("%s unavailable (%s); retrying in %.1f s", self.name, why, self.backoff_s)
        self._set_status(False, why)

    def _available(self) -> None:
        if self.backoff_s:
            self.backoff_s = 0.0
            self._set_status(True, "")

    def _set_status(self, available: bool, reason: str) -> None:
        with self.db.session() as s:
            row = s.get(SiteStatus, self.factory_id)
            if row is None:
                row = SiteStatus(factory_id=self.factory_id)
                s.add(row)
            row.available, row.reason, row.checked_at = available, reason, utcnow()


def _dt(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None
