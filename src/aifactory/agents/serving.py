"""The serving controller: keeps each endpoint's replicas as its spec and its load ask.

Level-triggered like the other controllers, one pass per wake-up (a new endpoint, an update, a
request for an endpoint at zero) or every second while anything is live. Per endpoint, in its
own transaction (a failure is that endpoint's, logged, retried next pass):

1. each replica is matched with its job: a job that ended ends the replica (one that never got
   ready counts toward a crash loop, which backs off); a running job's announced address
   (``AIF_SERVICE_URL=`` in its log) is health-checked (``GET /health``) before it gets
   requests; a ready replica that fails three checks in a row is replaced; one that is not
   ready within ``startup_timeout`` of starting is cancelled;
2. the wanted count comes from the load (``domain.serving.desired_replicas``) and a rolling
   update plan (``domain.serving.plan``) says which replicas to start and which to drain;
3. a draining replica is cancelled once its requests have finished (or after a grace).

New replicas are submitted like any job, as the endpoint's owner, in the same transaction as
their replica rows: a crash leaves either both or neither.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
from sqlalchemy import func, select, type_coerce
from sqlalchemy.orm import Session

from aifactory.agents.leases import LeaseHandle
from aifactory.broker.placement import get_placement_policy
from aifactory.db.engine import Database
from aifactory.db.models import Endpoint, EndpointReplica, EndpointRequest, Job, User
from aifactory.db.types import UTCDateTime, utcnow
from aifactory.domain.jobs import TERMINAL, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.domain.serving import (
    EndpointSpec,
    EndpointState,
    Load,
    Replica,
    ReplicaState,
    desired_replicas,
    plan,
)
from aifactory.errors import AIFactoryError, QuotaExceeded
from aifactory.services import interactive, submissions
from aifactory.services.candidates import job_request, site_candidates
from aifactory.services.endpoints import LIVE_REPLICAS, replica_job_spec
from aifactory.services.identity import principal_of
from aifactory.services.job_queries import announced_url, flag_cancel
from aifactory.services.jobs import POLICY

log = logging.getLogger(__name__)
HEALTH_TIMEOUT_S = 2.0
MAX_HEALTH_FAILURES = 3
DRAIN_GRACE_S = 60.0
CRASH_LOOP = 3  # replicas in a row that die before getting ready
START_RETRY_S = 10.0  # after a replica could not be started (budget, no site)
STALE_REQUEST_S = 900.0  # an open request older than this lost its gateway: not load


class ServingController:
    """Reconciles endpoints and interactive sessions (lease ``serving``)."""

    def __init__(
        self, db: Database, capacity: Mapping[str, int | None], lease: LeaseHandle
    ) -> None:
        self.db, self.capacity, self.lease = db, capacity, lease
        self.http = httpx.Client(timeout=HEALTH_TIMEOUT_S)
        self.live = False  # anything to look after: the runner then ticks every second

    def tick(self) -> None:
        with self.db.session() as s:
            ids = list(
                s.scalars(
                    select(Endpoint.id).where(
                        (Endpoint.state != EndpointState.STOPPED)
                        | Endpoint.id.in_(
                            select(EndpointReplica.endpoint_id).where(
                                EndpointReplica.state.in_(list(LIVE_REPLICAS))
                            )
                        )
                    )
                )
            )
        for endpoint_id in ids:
            try:
                with self.db.session() as s:
                    self.lease.fence(s)
                    self.reconcile(s, s.get_one(Endpoint, endpoint_id), utcnow())
            except Exception:
                log.exception("endpoint %s: pass failed; retrying", endpoint_id)
        with self.db.session() as s:
            self.lease.fence(s)
            sessions_live = interactive.reconcile(s, utcnow(), self.http, self.capacity)
        self.live = bool(ids) or sessions_live

    def close(self) -> None:
        self.http.close()

    # --- one endpoint ---

    def reconcile(self, s: Session, endpoint: Endpoint, now: datetime) -> None:
        spec = EndpointSpec.model_validate(endpoint.spec)
        replicas = list(
            s.scalars(
                select(EndpointReplica).where(
                    EndpointReplica.endpoint_id == endpoint.id,
                    EndpointReplica.state.in_(list(LIVE_REPLICAS)),
                )
            )
        )
        blocked = None
        for replica in replicas:
            self._observe(s, endpoint, spec, replica, now)
            if replica.state == ReplicaState.STARTING and blocked is None:
                blocked = self._budget_blocked(s, replica, now)
        live = [r for r in replicas if r.state != ReplicaState.ENDED]
        stopped = endpoint.state == EndpointState.STOPPED
        load = _load(s, endpoint.id, now)
        running = [r for r in live if r.state != ReplicaState.DRAINING]
        want = (
            0
            if stopped
            else desired_replicas(
                spec.replicas, spec.scale_to_zero_after, Load(load[0], load[1], len(running))
            )
        )
        step = plan(
            endpoint.spec_version,
            want,
            [Replica(r.id, r.spec_version, ReplicaState(r.state)) for r in running],
        )
        for replica in running:
            if replica.id in step.drain:
                replica.state, replica.reason = ReplicaState.DRAINING, "drained"
        backing_off = endpoint.retry_at is not None and endpoint.retry_at > now
        if step.start and not stopped and not backing_off:
            self._start(s, endpoint, step.start, now)
        for replica in live:
            if replica.state == ReplicaState.DRAINING:
                self._drain(s, replica, now)
        endpoint.desired = want
        if not stopped:
            self._state(endpoint, live, now, blocked)

    def _observe(
        self,
        s: Session,
        endpoint: Endpoint,
        spec: EndpointSpec,
        replica: EndpointReplica,
        now: datetime,
    ) -> None:
        job = s.get_one(Job, replica.job_id)
        if job.state in TERMINAL:
            if replica.ready_at is None and replica.state != ReplicaState.DRAINING:
                endpoint.failures += 1
                endpoint.reason = (
                    f"replica {replica.id} (job {job.id}) ended before it was ready: {job.reason}"
                )
            replica.state, replica.ended_at = ReplicaState.ENDED, now
            replica.reason = replica.reason or f"job {job.id} {job.state}: {job.reason}"
            return
        if replica.state == ReplicaState.DRAINING or job.state != JobState.RUNNING:
            return
        if replica.address is None:
            replica.address = announced_url(job)
        healthy = replica.address is not None and self._healthy(replica.address)
        if healthy:
            replica.failures = 0
            if replica.state == ReplicaState.STARTING:
                replica.state, replica.ready_at, endpoint.failures = ReplicaState.READY, now, 0
                log.info(
                    "endpoint %s: replica %s ready at %s",
                    endpoint.name,
                    replica.id,
                    replica.address,
                )
            return
        if replica.state == ReplicaState.READY:
            replica.failures += 1
            if replica.failures >= MAX_HEALTH_FAILURES:
                replica.state = ReplicaState.DRAINING
                replica.reason = f"failed {replica.failures} health checks in a row"
            return
        started = job.started_at or job.updated_at
        if (now - started).total_seconds() > spec.startup_timeout:
            replica.state = ReplicaState.DRAINING
            replica.reason = f"not ready {spec.startup_timeout} s after it started"
            endpoint.failures += 1
            endpoint.reason = f"replica {replica.id}: {replica.reason}"

    def _healthy(self, address: str) -> bool:
        try:
            return self.http.get(address + "/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _start(self, s: Session, endpoint: Endpoint, count: int, now: datetime) -> None:
        owner = principal_of(s.get_one(User, endpoint.owner_id))
        for _ in range(count):
            index = (s.scalar(select(func.count(EndpointReplica.id)).where(
                EndpointReplica.endpoint_id == endpoint.id)) or 0) + 1  # fmt: skip
            token = secrets.token_urlsafe(24)
            spec = replica_job_spec(endpoint, index, 20000 + secrets.randbelow(40000), token)
            try:
                with s.begin_nested():
                    job = submissions.submit(s, owner, spec, now, self.capacity).job
            except AIFactoryError as exc:
                # Budget can come back (a top-up, jobs ending): try again in a while.
                exhausted = isinstance(exc, QuotaExceeded)
                endpoint.state = EndpointState.EXHAUSTED if exhausted else EndpointState.FAILING
                endpoint.reason = f"cannot start a replica: {exc.message}"
                endpoint.retry_at = now + timedelta(seconds=START_RETRY_S)
                log.warning("endpoint %s: %s", endpoint.name, endpoint.reason)
                return
            s.add(
                EndpointReplica(
                    endpoint_id=endpoint.id,
                    spec_version=endpoint.spec_version,
                    job_id=job.id,
                    gpus=job.gpus,
                    state=ReplicaState.STARTING,
                    token=token,
                    created_at=now,
                )
            )
            s.flush()

    def _drain(self, s: Session, replica: EndpointReplica, now: datetime) -> None:
        """Cancel a draining replica's job once its requests are done (or the grace is over)."""
        open_requests = s.scalar(
            select(func.count(EndpointRequest.id)).where(
                EndpointRequest.replica_id == replica.id, EndpointRequest.ended_at.is_(None)
            )
        )
        replica.drain_at = replica.drain_at or now
        drained_for = (now - replica.drain_at).total_seconds()
        if open_requests and drained_for < DRAIN_GRACE_S:
            return
        job = s.get_one(Job, replica.job_id)
        if job.state in TERMINAL:
            replica.state, replica.ended_at = ReplicaState.ENDED, now
            return
        flag_cancel(s, job)

    def _budget_blocked(self, s: Session, replica: EndpointReplica, now: datetime) -> str | None:
        """Why a replica's job waits for budget rather than for GPUs, or None: it would be
        placed if the project's allocations had the hours."""
        job = s.get_one(Job, replica.job_id)
        if job.state != JobState.PENDING:
            return None
        spec = JobSpec.model_validate(job.spec)
        request = job_request(spec)
        sites = site_candidates(s, job.project_code, now, self.capacity)
        policy = get_placement_policy(POLICY)
        rich = tuple(replace(c.view, budget_remaining_gpu_hours=None) for c in sites)
        if not policy.place(request, rich, now.timestamp()).ranked:
            return None  # it does not fit anywhere now, budget or not: it waits for GPUs
        decision = policy.place(request, tuple(c.view for c in sites), now.timestamp())
        if decision.ranked:
            return None
        reasons = "; ".join(f"{k}: {v}" for k, v in decision.rejected.items())
        return f"the project's budget cannot pay for a replica ({reasons})"

    def _state(
        self, endpoint: Endpoint, live: list[EndpointReplica], now: datetime, blocked: str | None
    ) -> None:
        ready = any(r.state == ReplicaState.READY for r in live)
        refused = endpoint.retry_at is not None and endpoint.retry_at > now
        if not ready and refused and endpoint.desired > 0:
            return  # the state and reason _start gave stand until it tries again
        if not ready and blocked:
            endpoint.state, endpoint.reason = EndpointState.EXHAUSTED, blocked
            return
        if ready:
            endpoint.state, endpoint.retry_at = EndpointState.READY, None
            if endpoint.failures == 0:
                endpoint.reason = ""
        elif endpoint.failures >= CRASH_LOOP:
            endpoint.state = EndpointState.FAILING
            if endpoint.retry_at is None or endpoint.retry_at <= now:
                backoff = min(300, 10 * 2 ** (endpoint.failures - CRASH_LOOP))
                endpoint.retry_at = now + timedelta(seconds=backoff)
        elif endpoint.desired == 0 and not live:
            endpoint.state = EndpointState.IDLE
        else:
            endpoint.state = EndpointState.STARTING


def _load(s: Session, endpoint_id: int, now: datetime) -> tuple[int, float | None]:
    """Requests in flight, and seconds since the last one ended (or began)."""
    since = now - timedelta(seconds=STALE_REQUEST_S)
    inflight = (
        s.scalar(
            select(func.count(EndpointRequest.id)).where(
                EndpointRequest.endpoint_id == endpoint_id,
                EndpointRequest.ended_at.is_(None),
                EndpointRequest.started_at > since,
            )
        )
        or 0
    )
    latest = func.max(func.coalesce(EndpointRequest.ended_at, EndpointRequest.started_at))
    last = s.scalar(
        select(type_coerce(latest, UTCDateTime())).where(EndpointRequest.endpoint_id == endpoint_id)
    )
    return inflight, None if last is None else (now - last).total_seconds()
