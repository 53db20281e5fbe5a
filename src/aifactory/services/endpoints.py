"""Inference endpoints: create, update (a rolling update), stop, keys, and what they served.

An endpoint's replicas are jobs of its project (see ``domain/serving.py``); the serving
controller (``agents/serving.py``) starts, checks and replaces them, and the gateway
(``services/gateway.py``) sends them requests. Everything here is checked before anything is
stored, so a bad spec starts nothing and charges nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.broker.placement import get_placement_policy
from aifactory.db.models import (
    Endpoint,
    EndpointKey,
    EndpointReplica,
    EndpointRequest,
    Job,
    JobAttempt,
    ProjectMember,
    User,
)
from aifactory.db.types import utcnow
from aifactory.db.wake import wake
from aifactory.domain.jobspec import JobSpec, parse_spec
from aifactory.domain.serving import (
    EndpointSpec,
    EndpointState,
    ReplicaState,
    parse_model,
)
from aifactory.errors import Conflict, FieldError, Invalid, NotFound
from aifactory.services import submissions
from aifactory.services.candidates import job_request, site_candidates
from aifactory.services.identity import hash_token
from aifactory.services.jobs import POLICY, waits_for
from aifactory.services.permissions import Principal
from aifactory.services.views import View

SERVING = "serving"  # the serving controller's wake-up topic and lease
KEY_PREFIX = "aif-ep-"
LIVE_REPLICAS = (ReplicaState.STARTING, ReplicaState.READY, ReplicaState.DRAINING)


class ReplicaView(View):
    id: int
    job_id: int
    spec_version: int
    state: str
    address: str | None
    reason: str
    created_at: datetime
    ready_at: datetime | None
    ended_at: datetime | None


class UsageView(View):
    requests: int
    tokens_in: int
    tokens_out: int
    gpu_seconds: float


class EndpointView(View):
    id: int
    name: str
    project: str
    owner: str
    state: str
    reason: str
    spec_version: int
    desired: int
    checkpoint_path: str | None
    spec: dict[str, Any]
    replicas: list[ReplicaView]
    usage: UsageView
    created_at: datetime
    updated_at: datetime


class EndpointKeyView(View):
    id: int
    endpoint: str
    prefix: str
    name: str
    created_at: datetime
    revoked_at: datetime | None


class NewEndpointKey(View):
    key: str
    view: EndpointKeyView


def replica_job_spec(endpoint: Endpoint, index: int, port: int, token: str) -> JobSpec:
    """The job one replica runs: the endpoint's ``replica`` section and the service variables."""
    data = dict(endpoint.spec["replica"])
    env = {"AIF_SERVICE_HOST": "127.0.0.1"} | dict(data.get("environment") or {})
    env |= {
        "AIF_SERVICE_PORT": str(port),
        "AIF_SERVICE_TOKEN": token,
        "AIF_ENDPOINT_NAME": endpoint.name,
    }
    if endpoint.checkpoint_path:
        env["AIF_MODEL_CHECKPOINT"] = endpoint.checkpoint_path
    data |= {
        "name": f"ep-{endpoint.name}-r{index}"[:64],
        "project": endpoint.project_code,
        "environment": env,
        "retry": {"max_attempts": 1},  # the controller replaces a replica that ends
    }
    return parse_spec(data)


def create(
    session: Session,
    who: Principal,
    data: Mapping[str, Any],
    capacity: Mapping[str, int | None],
    submit_dir: str | None = None,
) -> EndpointView:
    """Accept an endpoint; the serving controller starts its replicas.

    Raises:
        Invalid: The spec breaks a rule (each named by its field), the checkpoint is not one
            the project can read, or more replicas are asked for than a partition holds.
        Conflict: The project already has a live endpoint of that name, or no factory it may
            use can run a replica.
    """
    spec, path = _checked(session, who, data, capacity, submit_dir)
    taken = session.scalar(
        select(Endpoint.id).where(
            Endpoint.project_code == spec.project,
            Endpoint.name == spec.name,
            Endpoint.state != EndpointState.STOPPED,
        )
    )
    if taken is not None:
        raise Conflict(f"project {spec.project} already has an endpoint {spec.name!r}")
    now = utcnow()
    endpoint = Endpoint(
        name=spec.name,
        project_code=spec.project,
        owner_id=who.user_id,
        spec=_stored(spec, submit_dir),
        spec_version=1,
        checkpoint_path=path,
        state=EndpointState.STARTING if spec.replicas.min else EndpointState.IDLE,
        reason="",
        failures=0,
        desired=spec.replicas.min,
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    wake(session, SERVING)
    return view(session, endpoint)


def update(
    session: Session,
    who: Principal,
    name: str,
    data: Mapping[str, Any],
    capacity: Mapping[str, int | None],
    submit_dir: str | None = None,
    project: str | None = None,
) -> EndpointView:
    """Replace the spec: a rolling update to a new version (same name and project).

    Raises:
        Invalid: As for :func:`create`, or the name or project differs.
    """
    endpoint = _visible(session, who, name, project)
    if endpoint.state == EndpointState.STOPPED:
        raise Conflict(f"endpoint {name!r} is stopped; create it again instead")
    spec, path = _checked(session, who, data, capacity, submit_dir)
    for field, old in (("name", endpoint.name), ("project", endpoint.project_code)):
        if getattr(spec, field) != old:
            raise Invalid.field(field, "unchanged", f"an update keeps the {field} ({old!r})")
    endpoint.spec, endpoint.checkpoint_path = _stored(spec, submit_dir), path
    endpoint.spec_version += 1
    endpoint.failures, endpoint.retry_at, endpoint.reason = 0, None, ""
    endpoint.updated_at = utcnow()
    session.flush()
    wake(session, SERVING)
    return view(session, endpoint)


def stop(session: Session, who: Principal, name: str, project: str | None = None) -> EndpointView:
    """Stop serving: no new requests; the controller drains and cancels the replicas."""
    endpoint = _visible(session, who, name, project)
    endpoint.state, endpoint.desired, endpoint.updated_at = EndpointState.STOPPED, 0, utcnow()
    endpoint.reason = f"stopped by {who.username}"
    session.flush()
    wake(session, SERVING)
    return view(session, endpoint)


def get(session: Session, who: Principal, name: str, project: str | None = None) -> EndpointView:
    return view(session, _visible(session, who, name, project))


def list_endpoints(
    session: Session, who: Principal, everything: bool = False
) -> list[EndpointView]:
    """The endpoints of the caller's projects (all of them for a federation admin), live ones
    unless ``everything``."""
    query = select(Endpoint).order_by(Endpoint.id)
    if not who.is_admin:
        query = query.where(Endpoint.project_code.in_(_projects(who)))
    if not everything:
        query = query.where(Endpoint.state != EndpointState.STOPPED)
    return [view(session, e) for e in session.scalars(query)]


def create_key(
    session: Session, who: Principal, name: str, label: str = "", project: str | None = None
) -> NewEndpointKey:
    """A new API key for the endpoint's gateway; the key itself is shown only now."""
    endpoint = _visible(session, who, name, project)
    if endpoint.state == EndpointState.STOPPED:
        raise Conflict(f"endpoint {name!r} is stopped")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = EndpointKey(
        endpoint_id=endpoint.id,
        token_hash=hash_token(key),
        prefix=key[: len(KEY_PREFIX) + 6],
        name=label,
        created_by=who.user_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return NewEndpointKey(key=key, view=_key_view(row, endpoint.name))


def list_keys(
    session: Session, who: Principal, name: str, project: str | None = None
) -> list[EndpointKeyView]:
    endpoint = _visible(session, who, name, project)
    rows = session.scalars(select(EndpointKey).where(EndpointKey.endpoint_id == endpoint.id))
    return [_key_view(r, endpoint.name) for r in rows]


def revoke_key(
    session: Session, who: Principal, name: str, key_id: int, project: str | None = None
) -> EndpointKeyView:
    endpoint = _visible(session, who, name, project)
    row = session.get(EndpointKey, key_id)
    if row is None or row.endpoint_id != endpoint.id:
        raise NotFound(f"endpoint {name!r} has no key {key_id}")
    row.revoked_at = row.revoked_at or utcnow()
    return _key_view(row, endpoint.name)


def view(session: Session, endpoint: Endpoint) -> EndpointView:
    replicas = session.scalars(
        select(EndpointReplica)
        .where(EndpointReplica.endpoint_id == endpoint.id)
        .order_by(EndpointReplica.id.desc())
        .limit(20)
    )
    usage = session.execute(
        select(
            func.count(EndpointRequest.id),
            func.coalesce(func.sum(EndpointRequest.tokens_in), 0),
            func.coalesce(func.sum(EndpointRequest.tokens_out), 0),
            func.coalesce(func.sum(EndpointRequest.gpu_seconds), 0.0),
        ).where(EndpointRequest.endpoint_id == endpoint.id)
    ).one()
    return EndpointView(
        id=endpoint.id,
        name=endpoint.name,
        project=endpoint.project_code,
        owner=session.get_one(User, endpoint.owner_id).username,
        state=endpoint.state,
        reason=endpoint.reason,
        spec_version=endpoint.spec_version,
        desired=endpoint.desired,
        checkpoint_path=endpoint.checkpoint_path,
        spec=endpoint.spec,
        replicas=[ReplicaView.model_validate(r) for r in replicas],
        usage=UsageView(
            requests=usage[0], tokens_in=usage[1], tokens_out=usage[2], gpu_seconds=usage[3]
        ),
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


# --- checks -----------------------------------------------------------------------------


def _checked(
    session: Session,
    who: Principal,
    data: Mapping[str, Any],
    capacity: Mapping[str, int | None],
    submit_dir: str | None,
) -> tuple[EndpointSpec, str | None]:
    spec: EndpointSpec = parse_model(EndpointSpec, data, "endpoint spec")
    submissions.check_member(session, who, spec.project)
    replica = _replica_spec(spec, submit_dir)
    path = _checkpoint(session, spec) if spec.checkpoint else None
    _fits(session, spec, replica, capacity)
    return spec, path


def _replica_spec(spec: EndpointSpec, submit_dir: str | None) -> JobSpec:
    """The replica section as a job spec; its errors are named ``replica.<field>``."""
    data = dict(spec.replica) | {"name": "replica", "project": spec.project}
    if submit_dir:
        data["environment"] = {"AIF_SUBMIT_DIR": submit_dir} | dict(data.get("environment") or {})
    try:
        return parse_spec(data)
    except Invalid as exc:
        details = [FieldError(f"replica.{d.field}", d.rule, d.message) for d in exc.details]
        raise Invalid(
            exc.message.replace("invalid job spec", "invalid endpoint replica"), details
        ) from None


def _stored(spec: EndpointSpec, submit_dir: str | None) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    if submit_dir:
        env = {"AIF_SUBMIT_DIR": submit_dir} | dict(data["replica"].get("environment") or {})
        data["replica"]["environment"] = env
    return data


def _checkpoint(session: Session, spec: EndpointSpec) -> str:
    """The checkpoint's path at the site: the directory a job of this project wrote it to."""
    assert spec.checkpoint is not None
    job = session.get(Job, spec.checkpoint.job)
    if job is None or job.project_code != spec.project:
        msg = f"job {spec.checkpoint.job} is not a job of project {spec.project}"
        raise Invalid.field("checkpoint.job", "project_can_read", msg)
    directory = (job.spec or {}).get("checkpoint_dir")
    if not directory:
        msg = f"job {job.id} has no checkpoint_dir: it wrote no checkpoint the platform knows of"
        raise Invalid.field("checkpoint.job", "has_checkpoint", msg)
    if not PurePosixPath(directory).is_absolute():
        workdir = session.scalar(
            select(JobAttempt.workdir)
            .where(JobAttempt.job_id == job.id, JobAttempt.workdir.is_not(None))
            .order_by(JobAttempt.attempt.desc())
            .limit(1)
        )
        if workdir is None:
            msg = f"job {job.id} never ran at a site, so it wrote no checkpoint"
            raise Invalid.field("checkpoint.job", "has_checkpoint", msg)
        directory = str(PurePosixPath(workdir) / directory)
    path = (
        str(PurePosixPath(directory) / spec.checkpoint.file) if spec.checkpoint.file else directory
    )
    if not Path(path).exists():
        msg = f"job {job.id}'s checkpoint {path} does not exist (yet?)"
        raise Invalid.field("checkpoint", "exists", msg)
    return path


def _fits(
    session: Session,
    spec: EndpointSpec,
    replica: JobSpec,
    capacity: Mapping[str, int | None],
) -> None:
    """A replica can run on one of the project's partitions, and ``replicas.max`` of them fit
    in the largest."""
    now = utcnow()
    candidates = site_candidates(session, spec.project, now, capacity)
    request = job_request(replica)
    policy = get_placement_policy(POLICY)
    decision = policy.place(request, tuple(c.view for c in candidates), now.timestamp())
    if (
        not decision.ranked
        and waits_for(policy, request, candidates, decision.rejected, now) is None
    ):
        why = "; ".join(f"{k}: {v}" for k, v in decision.rejected.items()) or (
            f"project {spec.project} has no active allocation"
        )
        details = [FieldError(k, "placement", v) for k, v in decision.rejected.items()]
        raise Conflict(f"no factory can run a replica of {spec.name!r}: {why}", details)
    fitting = [c for c in candidates if c.view.name not in decision.rejected]
    largest = max((c.view.total_gpus for c in fitting), default=0)
    if request.gpus and spec.replicas.max * request.gpus > largest:
        msg = (
            f"{spec.replicas.max} replicas of {request.gpus} GPUs need "
            f"{spec.replicas.max * request.gpus} GPUs; the largest partition the project may "
            f"use has {largest}"
        )
        raise Invalid.field("replicas.max", "partition_size", msg)


def _projects(who: Principal) -> Any:
    return select(ProjectMember.project_code).where(ProjectMember.user_id == who.user_id)


def _visible(session: Session, who: Principal, name: str, project: str | None) -> Endpoint:
    """The live endpoint of that name in one of the caller's projects (one answer for "no such
    endpoint" and "not yours")."""
    query = select(Endpoint).where(Endpoint.name == name).order_by(Endpoint.id.desc())
    if project:
        query = query.where(Endpoint.project_code == project)
    if not who.is_admin:
        query = query.where(Endpoint.project_code.in_(_projects(who)))
    found = list(session.scalars(query))
    live = [e for e in found if e.state != EndpointState.STOPPED] or found[:1]
    if not live:
        raise NotFound(f"no endpoint {name!r} in your projects")
    if len({e.project_code for e in live}) > 1:
        raise Invalid.field(
            "project", "required", f"{name!r} exists in several projects; say which"
        )
    return live[0]


def _key_view(row: EndpointKey, endpoint: str) -> EndpointKeyView:
    return EndpointKeyView(
        id=row.id,
        endpoint=endpoint,
        prefix=row.prefix,
        name=row.name,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )
