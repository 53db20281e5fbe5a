"""Handing a site's placed jobs to its executor: many at a time, each recorded once.

A pass takes at most :data:`HANDOVER_BATCH` placed jobs. An executor that can look many
attempts up at once (Slurm: one ``squeue --name=A,B,...``) does so first; then up to
:data:`HANDOVER_THREADS` submissions run at the same time (``sbatch`` mostly waits on
slurmctld, so a site takes several at once: ~8 concurrent clients is where the harness's
slurmctld stops getting faster). The submissions that have returned are recorded together
in one fenced transaction; if that fails, each is recorded in a transaction of its own, so one
that fails (or a crash) loses none of the others, and a job recorded is never handed over
again; one not recorded is found by its name on the next pass instead of being submitted twice
(the executor's submit is idempotent per job and attempt).

A retry placed here after its job ran at another site first gets that job's last replicated
checkpoint (``services/checkpoints.py``) staged into its ``checkpoint_dir``, then is submitted;
the staging is recorded before the submission, so it happens once per attempt, and a crash in
between stages it again into an attempt that has not started yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import TypeGuard

from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.db.models import Job, JobAttempt, Partition
from aifactory.db.types import utcnow
from aifactory.domain.jobs import JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.errors import BackendUnavailable
from aifactory.executors import ExecJob, Executor
from aifactory.executors.checkpoints import access
from aifactory.executors.from_spec import exec_job
from aifactory.services import checkpoints, site_accounts
from aifactory.services import jobs as job_service

log = logging.getLogger(__name__)
#: Submissions in flight at once per site.
HANDOVER_THREADS = 8
#: Placed jobs one pass takes; more make the loop come back at once (``backlog``).
HANDOVER_BATCH = 64
#: ``db.session``: a new session in a transaction, committed when the block ends.
Sessions = Callable[[], AbstractContextManager[Session]]
#: ``with_job(job id, expected, act)``: act on one job in its own fenced transaction.
JobStep = tuple[int, Callable[[Job], bool], Callable[[Session, Job], None]]
WithJob = Callable[[int, Callable[[Job], bool], Callable[[Session, Job], None]], bool]
#: ``with_jobs(steps)``: several such steps in one transaction; whether each was done.
WithJobs = Callable[[Sequence[JobStep]], list[bool]]


class HandOver:
    """The hand-over step of one site agent."""

    def __init__(
        self,
        agent_name: str,
        factory_id: int,
        executor: Executor,
        checkpoint_store: Path | None = None,
    ) -> None:
        self.name, self.factory_id, self.executor = agent_name, factory_id, executor
        self.waiting: dict[int, float] = {}  # job id -> monotonic time its hand-over may retry
        self.backlog = False  # more placed jobs wait than one pass hands over
        #: The control plane's checkpoint store (``services/checkpoints.py``); None: no staging.
        self.checkpoint_store = checkpoint_store
        # Retries placed here whose replicated checkpoint is staged before their submission.
        self._staging: dict[int, tuple[str, checkpoints.Staging]] = {}
        self._sessions: Sessions | None = None

    def run(
        self, session: Sessions, with_job: WithJob, with_jobs: WithJobs
    ) -> list[tuple[str, int]]:
        """Hand placed jobs over; returns (backend id, job id) of those recorded as submitted.

        A job that cannot be turned into an executor job, or that the scheduler refuses,
        fails with the reason and frees its budget; the others go on. A job the executor
        defers (Slurm said "not now", or an unclear sbatch is not settled yet) stays placed
        and is left alone until the time the executor named; an unreachable site stops the
        pass (its jobs stay placed too) by raising the ``BackendUnavailable``.
        """
        self._sessions = session
        todo, broken = self._take(session)
        for job_id, attempt, why in broken:
            with_job(job_id, _placed(attempt), partial(self._refuse, why))
        if not todo:
            return []
        lookup = getattr(self.executor, "lookup", None)
        if lookup is not None and len(todo) > 1:
            lookup([spec for _, _, spec in todo])  # one scheduler call for the whole batch
        handed: list[tuple[str, int]] = []
        unreachable = None
        with ThreadPoolExecutor(max_workers=min(HANDOVER_THREADS, len(todo))) as pool:
            futures = {pool.submit(self._submit, i, spec): (i, a, spec) for i, a, spec in todo}
            waiting = set(futures)
            while waiting:
                done, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                back = [(*futures[f], f.result()) for f in done]
                more, failed = self._settle(back, with_job, with_jobs)
                handed += more
                unreachable = failed or unreachable
        if unreachable is not None:
            self.backlog = False
            raise unreachable
        return handed

    def _settle(
        self,
        back: list[tuple[int, int, ExecJob, str | Exception]],
        with_job: WithJob,
        with_jobs: WithJobs,
    ) -> tuple[list[tuple[str, int]], BackendUnavailable | None]:
        """Record the submissions back by now together (one commit) while the rest go on;
        returns (backend id, job id) of those recorded and the site's error, if any."""
        steps: list[JobStep] = []
        backend_ids: list[str] = []
        unreachable = None
        for job_id, attempt, spec, outcome in back:
            if isinstance(outcome, str):
                steps.append((job_id, _placed(attempt), partial(self._record, spec, outcome)))
                backend_ids.append(outcome)
            else:  # an unreachable site leaves it placed: the next pass tries again
                unreachable = self._failed(job_id, attempt, outcome, with_job) or unreachable
        recorded = with_jobs(steps)
        pairs = zip(backend_ids, steps, recorded, strict=True)
        return [(backend_id, step[0]) for backend_id, step, ok in pairs if ok], unreachable

    def _failed(
        self, job_id: int, attempt: int, error: Exception, with_job: WithJob
    ) -> BackendUnavailable | None:
        """A submission that did not go through: the site's ``BackendUnavailable`` if the
        site does not answer; otherwise the job waits (deferred) or is refused."""
        if _deferred(error):
            self.waiting[job_id] = time.monotonic() + float(error.extra.get("retry_after_s") or 0)
        elif isinstance(error, BackendUnavailable):
            return error
        else:
            with_job(job_id, _placed(attempt), partial(self._refuse, str(error)))
        return None

    def _take(
        self, session: Sessions
    ) -> tuple[list[tuple[int, int, ExecJob]], list[tuple[int, int, str]]]:
        """This pass's placed jobs as executor jobs, and those that cannot become one."""
        todo: list[tuple[int, int, ExecJob]] = []
        broken: list[tuple[int, int, str]] = []
        now = time.monotonic()
        self.waiting = {i: due for i, due in self.waiting.items() if due > now}
        self._staging = {}
        with session() as s:
            query = select(Job).where(
                Job.factory_id == self.factory_id, Job.state == JobState.PLACED
            )
            if self.waiting:
                query = query.where(Job.id.not_in(list(self.waiting)))
            placed = list(s.scalars(query.order_by(Job.id).limit(HANDOVER_BATCH + 1)))
            self.backlog = len(placed) > HANDOVER_BATCH
            for job in placed[:HANDOVER_BATCH]:
                if job.cancel_requested:
                    continue
                try:
                    todo.append((job.id, job.attempt, self.exec_job_of(s, job)))
                    self._plan_staging(s, job)
                except Exception as exc:  # a bad job must not stop its site
                    broken.append((job.id, job.attempt, f"cannot be run as given: {exc}"))
        return todo, broken

    def _plan_staging(self, s: Session, job: Job) -> None:
        """A retry whose last replicated checkpoint was taken at another site gets it staged."""
        directory = (job.spec or {}).get("checkpoint_dir")
        if self.checkpoint_store is None or job.attempt < 2 or not directory:
            return
        copy = checkpoints.staging_for(
            s, self.checkpoint_store, job.id, job.attempt, self.factory_id
        )
        if copy is not None:
            self._staging[job.id] = (str(directory), copy)

    def _stage(self, job_id: int, spec: ExecJob) -> None:
        """Put the job's replicated checkpoint into the new attempt's directory, then record it
        (a crash before the record stages it again; the attempt was not submitted yet)."""
        planned = self._staging.get(job_id)
        site = access(self.executor)
        if planned is None or site is None or self._sessions is None:
            return
        directory, copy = planned
        try:
            site.stage_checkpoint(spec, directory, copy.files)
        except BackendUnavailable:
            raise
        except Exception as exc:  # the attempt still runs, from what the site has
            log.warning("%s: checkpoint of job %s not staged: %s", self.name, job_id, exc)
            return
        with self._sessions() as s:
            checkpoints.mark_staged(s, job_id, spec.attempt)
        log.info(
            "%s: staged checkpoint v%d (step %s) of job %s into attempt %d",
            self.name,
            copy.version,
            copy.step,
            job_id,
            spec.attempt,
        )

    def _submit(self, job_id: int, spec: ExecJob) -> str | Exception:
        """Submit one attempt (idempotent per job and attempt); errors are returned, not raised.

        Only an ``Invalid`` (or an error outside the platform's own) refuses the job; an
        executor says "try this one later" with a ``BackendUnavailable`` whose
        ``extra["scope"]`` is ``"job"`` (and ``extra["retry_after_s"]``), and "the site does
        not answer" with any other ``BackendUnavailable``.
        """
        try:
            self._stage(job_id, spec)
            return self.executor.submit(spec)
        except Exception as exc:
            level = logging.INFO if _deferred(exc) else logging.WARNING
            log.log(level, "%s: hand-over of %s failed: %s", self.name, spec.job_id, exc)
            return exc

    def _refuse(self, why: str, s: Session, job: Job) -> None:
        """The job cannot run here as asked: fail it with the reason and free its budget."""
        job_service.release_reservation(s, job, self.name)
        job_service.move(s, job, JobState.FAILED, f"{self.name} refused it: {why}", utcnow())

    def _record(self, spec: ExecJob, backend_id: str, s: Session, job: Job) -> None:
        logs = self.executor.log_paths_for(spec) or (None, None)
        job.backend_id = backend_id
        s.add(
            JobAttempt(
                job_id=job.id,
                attempt=job.attempt,
                factory_id=self.factory_id,
                partition_id=job.partition_id or 0,
                backend_id=backend_id,
                state=JobState.SUBMITTED,
                stdout_path=logs[0],
                stderr_path=logs[1],
                workdir=self.executor.workdir_for(spec),
            )
        )
        job_service.move(s, job, JobState.SUBMITTED, f"handed to {self.name}", utcnow())

    def exec_job_of(self, s: Session, job: Job) -> ExecJob:
        """The job's current attempt as this site's executor takes it."""
        spec = JobSpec.model_validate(job.spec)
        partition = s.get_one(Partition, job.partition_id).name if job.partition_id else None
        required = getattr(self.executor, "requires_site_account", None)
        return exec_job(
            spec,
            exec_id=job.exec_id,
            platform_id=str(job.id),
            attempt=job.attempt,
            time_limit_s=float(job.time_limit_s),
            partition=partition,
            array_id=job.array_id,
            array_task=job.array_task,
            run_as=site_accounts.run_as(
                s, job.owner_id, self.factory_id, self.name, required=required
            ),
        )


def _deferred(outcome: object) -> TypeGuard[BackendUnavailable]:
    """An executor's "hand this job over later" (per job; the site itself answers)."""
    return isinstance(outcome, BackendUnavailable) and outcome.extra.get("scope") == "job"


def _placed(attempt: int) -> Callable[[Job], bool]:
    """Still placed, in the same attempt, and not being cancelled."""
    return lambda j: j.state == JobState.PLACED and j.attempt == attempt and not j.cancel_requested
