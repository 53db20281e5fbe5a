"""Inference endpoints and interactive sessions: their specs and the pure decisions about them
(how many replicas an endpoint wants, which to start or stop in a rolling update). No I/O.

An endpoint is a model server run as replicas; each replica is an ordinary job of the
endpoint's project (placed, budgeted, handed to a site and charged like any job), whose spec is
the endpoint's ``replica`` section. A replica says where it listens by printing one line,
``AIF_SERVICE_URL=http://HOST:PORT``, to its standard output; the control plane reads it from
the job's log and checks ``GET /health`` before sending it requests (docs/serving.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aifactory.domain.jobspec import SInt, parse_duration
from aifactory.errors import FieldError, Invalid

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
SERVICE_URL = re.compile(r"^AIF_SERVICE_URL=(https?://[A-Za-z0-9._:\[\]-]+)\s*$", re.MULTILINE)
Duration = Annotated[int, Field(ge=1, le=366 * 86400)]
#: Idle seconds after which an endpoint without scale_to_zero_after drops back to its minimum.
SCALE_IN_AFTER_S = 300


class EndpointState(StrEnum):
    """Where an endpoint stands; the controller writes it from its replicas."""

    STARTING = "starting"  # no replica ready yet
    READY = "ready"  # at least one replica answers
    IDLE = "idle"  # scaled to zero; the next request starts a replica
    FAILING = "failing"  # replicas keep dying before they get ready; see the reason
    EXHAUSTED = "exhausted"  # the project's budget cannot pay for a replica; see the reason
    STOPPED = "stopped"  # deleted by its owner: no replicas, no requests


class ReplicaState(StrEnum):
    STARTING = "starting"  # its job is queued or running, not yet answering
    READY = "ready"
    DRAINING = "draining"  # being replaced or scaled down: gets no new requests
    ENDED = "ended"  # its job is over


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CheckpointRef(_Spec):
    """A checkpoint written by one of the project's jobs (its ``checkpoint_dir``)."""

    job: SInt = Field(ge=1, description="the job that wrote it")
    file: str | None = Field(
        default=None,
        max_length=255,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="a file in that directory (default: the directory itself)",
    )


class Replicas(_Spec):
    min: SInt = Field(default=1, ge=0, le=64)
    max: SInt = Field(default=1, ge=1, le=64)
    target_inflight: SInt = Field(
        default=8, ge=1, le=10_000, description="requests in flight per replica before scaling out"
    )

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class EndpointSpec(_Spec):
    """What ``aif endpoints create`` takes (YAML or JSON).

    ``replica`` is a job spec without ``name`` and ``project`` (they come from the endpoint):
    the model server to run, its resources and environment. The platform adds
    ``AIF_SERVICE_PORT`` (a port to listen on), ``AIF_SERVICE_HOST``, ``AIF_SERVICE_TOKEN`` (the
    bearer token the gateway sends; the server should require it), ``AIF_ENDPOINT_NAME`` and,
    with ``checkpoint``, ``AIF_MODEL_CHECKPOINT`` (the checkpoint's path at the site).
    """

    name: str = Field(pattern=NAME, description="the model name clients ask the gateway for")
    project: str = Field(min_length=1, max_length=32)
    checkpoint: CheckpointRef | None = None
    replicas: Replicas = Field(default_factory=Replicas)
    scale_to_zero_after: Duration | None = Field(
        default=None, description="idle time after which no replica is kept (None: never)"
    )
    startup_timeout: Duration = Field(default=600, description="time a replica has to get ready")
    replica: dict[str, Any]

    @field_validator("scale_to_zero_after", "startup_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return value if value is None else parse_duration(value)

    @field_validator("replica")
    @classmethod
    def _job_like(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = sorted({"name", "project", "array"} & set(value))
        if taken:
            raise ValueError(f"{', '.join(taken)} come from the endpoint; leave them out")
        return value

    @model_validator(mode="after")
    def _zero(self) -> EndpointSpec:
        if self.replicas.min == 0 and self.scale_to_zero_after is None:
            raise ValueError("replicas.min 0 needs scale_to_zero_after (an idle time)")
        return self


class SessionSpec(_Spec):
    """What ``aif sessions start`` takes."""

    project: str = Field(min_length=1, max_length=32)
    kind: Literal["jupyter", "shell"] = "jupyter"
    gpus: SInt = Field(default=0, ge=0, le=64)
    cpus: SInt | None = Field(default=None, ge=1, le=1024)
    memory_gb: float | None = Field(default=None, gt=0, le=100_000)
    time: Duration = Field(default=7200)
    idle_timeout: Duration = Field(default=3600, description="culled after this long unused")
    allowed_countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] | None = None

    @field_validator("time", "idle_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value)


def parse_model(model: type[BaseModel], data: Any, what: str) -> Any:
    """Validate ``data`` as ``model``; every broken rule is named by its field.

    Raises:
        Invalid: One entry per broken rule.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            FieldError(".".join(str(p) for p in e["loc"]) or what, e["type"], e["msg"])
            for e in exc.errors()
        ]
        summary = "; ".join(f"{d.field}: {d.message}" for d in details)
        raise Invalid(f"invalid {what}: {summary}", details) from None


def service_url(log_head: str) -> str | None:
    """The address a replica announced in its standard output, if it did yet."""
    match = SERVICE_URL.search(log_head)
    return match.group(1) if match else None


@dataclass(frozen=True)
class Load:
    """What the autoscaler looks at, for one endpoint."""

    inflight: int  # requests being answered or waiting for a replica
    idle_s: float | None  # seconds since the last request ended (None: never had one)
    live: int  # replicas of any version that are starting or ready


def desired_replicas(replicas: Replicas, scale_to_zero_after: int | None, load: Load) -> int:
    """How many replicas the endpoint should have now.

    Scales out to ``ceil(inflight / target_inflight)`` within ``[min, max]``; while requests
    keep coming (one in the last ``scale_to_zero_after``, or ``SCALE_IN_AFTER_S`` without it)
    it never scales in, so bursty load does not make replicas come and go; once that long
    passes without a request it drops to ``min`` (0 allowed: scale to zero). A request for an
    endpoint at zero counts as in flight, so it brings one replica back.
    """
    wanted = math.ceil(load.inflight / replicas.target_inflight)
    window = SCALE_IN_AFTER_S if scale_to_zero_after is None else scale_to_zero_after
    busy = load.inflight > 0 or (load.idle_s is not None and load.idle_s < window)
    if not busy:
        return replicas.min
    return max(replicas.min, 1, min(replicas.max, max(wanted, load.live)))


@dataclass(frozen=True)
class Replica:
    """A replica as the planner sees it."""

    id: int
    version: int
    state: ReplicaState


@dataclass(frozen=True)
class Plan:
    """What the controller does this pass: start ``start`` new replicas of the current version,
    drain (stop sending requests to, then cancel) the replicas in ``drain``."""

    start: int
    drain: tuple[int, ...]


def plan(version: int, desired: int, replicas: Sequence[Replica]) -> Plan:
    """A rolling update toward ``desired`` replicas of ``version``.

    New-version replicas are started first (one beyond ``desired`` while old ones remain, so
    capacity never drops during an update); an old-version replica is drained only once a
    new one is ready to take its place. Scaling in drains starting replicas before ready ones,
    and the newest first.
    """
    live = [r for r in replicas if r.state in (ReplicaState.STARTING, ReplicaState.READY)]
    new = [r for r in live if r.version == version]
    old = [r for r in live if r.version != version]
    new_ready = sum(r.state is ReplicaState.READY for r in new)
    surge = 1 if old and desired > 0 else 0
    start = max(0, min(desired - len(new), desired + surge - len(live)))
    drain: list[int] = []
    # Old replicas go as new ones get ready (all at once when nothing is wanted).
    replaceable = len(old) if desired == 0 else max(0, new_ready + len(old) - desired)
    ranked_old = sorted(old, key=lambda r: (r.state is ReplicaState.READY, r.id))
    drain += [r.id for r in ranked_old[: min(len(old), replaceable)]]
    if len(new) > desired:
        ranked = sorted(new, key=lambda r: (r.state is ReplicaState.READY, -r.id))
        drain += [r.id for r in ranked[: len(new) - desired]]
    return Plan(start=start, drain=tuple(drain))
