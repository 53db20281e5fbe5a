"""Serving: inference endpoints, their replicas, keys and metered requests; interactive sessions.

Replicas and sessions run as ordinary jobs (``job_id``), so placement, budgets, hand-over and
accounting are the jobs' own; these tables add what a long-lived service needs on top.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow

_LIVE = text("state != 'stopped'")


class Endpoint(Base):
    __tablename__ = "endpoints"
    __table_args__ = (
        # A name is taken once per project among endpoints not stopped.
        Index(
            "ux_endpoints_live_name",
            "project_code",
            "name",
            unique=True,
            sqlite_where=_LIVE,
            postgresql_where=_LIVE,
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Bumped by every update of the spec; replicas of older versions are rolled over.
    spec_version: Mapped[int] = mapped_column(Integer, default=1)
    #: The checkpoint's path at the site, resolved when the spec was accepted.
    checkpoint_path: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    #: Replicas that ended before they ever got ready, in a row (a crash loop backs off).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    desired: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    __mapper_args__ = {"version_id_col": version}


class EndpointReplica(Base):
    __tablename__ = "endpoint_replicas"
    __table_args__ = (Index("ix_endpoint_replicas_live", "endpoint_id", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    spec_version: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), unique=True)
    gpus: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(255))
    #: The bearer token the gateway sends it (given to the replica's job as AIF_SERVICE_TOKEN).
    token: Mapped[str] = mapped_column(String(64))
    failures: Mapped[int] = mapped_column(Integer, default=0)  # health checks failed in a row
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    drain_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EndpointKey(Base):
    """An API key for one endpoint's gateway; only its SHA-256 is stored."""

    __tablename__ = "endpoint_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(64), default="")
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class EndpointRequest(Base):
    """One request through the gateway, metered: written when it arrives, finished when done.

    ``request_id`` is unique, so a request is metered once whoever retries the write.
    """

    __tablename__ = "endpoint_requests"
    __table_args__ = (
        Index("ix_endpoint_requests_open", "endpoint_id", "ended_at"),
        Index("ix_endpoint_requests_endpoint_id", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40), unique=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("endpoints.id"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("endpoint_keys.id"), index=True)
    replica_id: Mapped[int | None] = mapped_column(Integer)
    route: Mapped[str] = mapped_column(String(32))
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[int | None] = mapped_column(Integer)  # HTTP status once answered
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    gpu_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str] = mapped_column(Text, default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InteractiveSession(Base):
    """A JupyterLab or terminal a person runs as a job, proxied at ``/sessions/<id>/``."""

    __tablename__ = "interactive_sessions"
    __table_args__ = (Index("ix_interactive_sessions_live", "state", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    project_code: Mapped[str] = mapped_column(ForeignKey("projects.code"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    address: Mapped[str | None] = mapped_column(String(255))
    token: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
