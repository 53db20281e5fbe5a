"""The model gateway's database side: keys, budget, replica choice and per-request metering.

Each function is one short transaction, so a streamed answer holds no connection while it
streams. A request is metered in one row (``EndpointRequest``, unique ``request_id``): opened
when it arrives (an open request is load, and brings an endpoint at zero back), given the
replica that answers it, and closed once with its tokens and GPU-seconds. Closing is a
compare-and-set on ``ended_at IS NULL``: a request is never metered twice.

What a request costs: an endpoint's replicas are jobs, charged to the allocation like any job
(GPUs x time x charge factor) whether they answer one request or many; a request's
GPU-seconds (its time on a replica x the replica's GPUs) say how that time was used. New
requests are refused (402) when no replica runs and the budget cannot pay for one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Endpoint,
    EndpointKey,
    EndpointReplica,
    EndpointRequest,
)
from aifactory.db.wake import wake
from aifactory.domain.serving import EndpointState, ReplicaState
from aifactory.errors import NotFound, QuotaExceeded, Unauthenticated
from aifactory.services.endpoints import SERVING
from aifactory.services.identity import hash_token


@dataclass(frozen=True)
class Caller:
    """Whom a gateway key lets in: one endpoint."""

    key_id: int
    endpoint_id: int
    endpoint: str
    project: str
    created_at: datetime


@dataclass(frozen=True)
class Target:
    """A ready replica to send a request to."""

    replica_id: int
    address: str
    token: str
    gpus: int


def authenticate(session: Session, key: str | None) -> Caller:
    """The endpoint a key belongs to.

    Raises:
        Unauthenticated: No key, an unknown or revoked one, or its endpoint is stopped.
    """
    if not key:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <endpoint key>'")
    row = session.execute(
        select(
            EndpointKey.id, Endpoint.id, Endpoint.name, Endpoint.project_code, Endpoint.created_at
        )
        .join(Endpoint, Endpoint.id == EndpointKey.endpoint_id)
        .where(
            EndpointKey.token_hash == hash_token(key),
            EndpointKey.revoked_at.is_(None),
            Endpoint.state != EndpointState.STOPPED,
        )
    ).first()
    if row is None:
        raise Unauthenticated("invalid API key (unknown, revoked, or its endpoint is stopped)")
    return Caller(*row)


def check_model(caller: Caller, model: object) -> None:
    """The request names the key's endpoint (clients send ``model``; the key decides)."""
    if model is not None and model != caller.endpoint:
        raise NotFound(
            f"model {model!r} is not served with this key; it serves {caller.endpoint!r}"
        )


def budget_problem(session: Session, endpoint_id: int) -> str | None:
    """Why new requests are refused for budget, or None.

    A replica's hours are reserved when it starts (like any job's), so a running replica is
    paid for until its time limit; requests are refused when no replica is ready and the
    project's budget cannot pay for one (the controller found so when it tried to start one).
    """
    state, reason = session.execute(
        select(Endpoint.state, Endpoint.reason).where(Endpoint.id == endpoint_id)
    ).one()
    if state != EndpointState.EXHAUSTED:
        return None
    ready = session.scalar(
        select(func.count(EndpointReplica.id)).where(
            EndpointReplica.endpoint_id == endpoint_id,
            EndpointReplica.state == ReplicaState.READY,
        )
    )
    return None if ready else f"budget exhausted: {reason}"


def open_request(
    session: Session, caller: Caller, route: str, stream: bool, now: datetime
) -> tuple[int, Target | None]:
    """Meter a new request (it counts as load from now on) and give it a ready replica if
    there is one (one transaction for both: it is on every request's way to its first token).

    Raises:
        QuotaExceeded: The endpoint's budget is used up (the request is not metered).
    """
    problem = budget_problem(session, caller.endpoint_id)
    if problem is not None:
        raise QuotaExceeded(problem)
    row = EndpointRequest(
        request_id=uuid.uuid4().hex,
        endpoint_id=caller.endpoint_id,
        key_id=caller.key_id,
        route=route,
        stream=stream,
        started_at=now,
    )
    session.add(row)
    session.flush()
    target = pick(session, caller.endpoint_id, row.id, None)
    if target is None:
        wake(session, SERVING)  # an endpoint at zero: bring a replica back now
    return row.id, target


def pick(session: Session, endpoint_id: int, request_row: int, avoid: int | None) -> Target | None:
    """The ready replica with the fewest open requests (not ``avoid``), given the request."""
    open_count = (
        select(func.count(EndpointRequest.id))
        .where(EndpointRequest.replica_id == EndpointReplica.id, EndpointRequest.ended_at.is_(None))
        .scalar_subquery()
    )
    query = (
        select(EndpointReplica)
        .where(
            EndpointReplica.endpoint_id == endpoint_id,
            EndpointReplica.state == ReplicaState.READY,
            EndpointReplica.address.is_not(None),
        )
        .order_by(open_count, EndpointReplica.id)
    )
    if avoid is not None:
        query = query.where(EndpointReplica.id != avoid)
    replica = session.scalars(query.limit(1)).first()
    if replica is None or replica.address is None:
        return None
    session.execute(
        update(EndpointRequest)
        .where(EndpointRequest.id == request_row)
        .values(replica_id=replica.id)
    )
    return Target(replica.id, replica.address, replica.token, replica.gpus)


def waiting_reason(session: Session, endpoint_id: int) -> tuple[str, str]:
    """The endpoint's state and reason, while a request waits for a replica."""
    row = session.execute(
        select(Endpoint.state, Endpoint.reason).where(Endpoint.id == endpoint_id)
    ).one()
    return row[0], row[1]


def close_request(
    session: Session,
    request_row: int,
    now: datetime,
    *,
    status: int,
    tokens_in: int = 0,
    tokens_out: int = 0,
    gpu_seconds: float = 0.0,
    error: str = "",
) -> bool:
    """Finish the request's metering once; False when it was already finished."""
    done = session.execute(
        update(EndpointRequest)
        .where(EndpointRequest.id == request_row, EndpointRequest.ended_at.is_(None))
        .values(
            ended_at=now,
            status=status,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            gpu_seconds=gpu_seconds,
            error=error[:2000],
        )
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def suspect(session: Session, replica_id: int) -> None:
    """A replica refused a connection: count it as a failed health check now."""
    session.execute(
        update(EndpointReplica)
        .where(EndpointReplica.id == replica_id)
        .values(failures=EndpointReplica.failures + 1)
    )
    wake(session, SERVING)
