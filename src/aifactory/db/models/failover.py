"""Failover: replicated checkpoints, attempts to cancel at a site that left, site outages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow


class CheckpointCopy(Base):
    """The last complete checkpoint of a managed job copied off its site (one row per job).

    The files are in the control plane's checkpoint store (``<data dir>/checkpoints/<job id>``);
    ``version`` counts the copies taken, ``fingerprint`` names the files copied (names, sizes,
    times), ``step`` is the step the job reported for it (``checkpoint step=N``), if it did.
    """

    __tablename__ = "checkpoint_copies"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[int | None] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(64))
    files: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The attempt and site the copy was taken from.
    attempt: Mapped[int] = mapped_column(Integer)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), index=True)
    copied_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The last attempt the copy was staged into (at another site), and when.
    staged_attempt: Mapped[int | None] = mapped_column(Integer)
    staged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaleAttempt(Base):
    """An attempt that is no longer its job's current one and may still be at its site: the
    site's agent cancels it there when the site answers, then marks it done."""

    __tablename__ = "stale_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), index=True)
    backend_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SiteOutage(Base):
    """Since when a factory's scheduler has not answered (no row: it answers)."""

    __tablename__ = "site_outages"

    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
