"""Start estimates that sites' own schedulers gave (Slurm's ``squeue --start``), per partition."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer
from sqlalchemy.orm import Mapped, mapped_column

from aifactory.db.models.base import Base
from aifactory.db.types import UTCDateTime, utcnow


class SiteEstimate(Base):
    """What a partition's scheduler expects of its pending jobs, as its site agent last read it.

    Written by the site agent of a backend with the ``start_estimates`` capability (one row per
    partition, replaced on each read); read by ``jobs why`` and placement in any API process.
    ``latest_start_at`` is the latest expected start among the pending jobs (a new job starts
    no earlier, as the scheduler sees it); ``jobs`` maps scheduler job ids to their expected
    starts (epoch seconds), so a job queued there shows its own.
    """

    __tablename__ = "site_estimates"

    partition_id: Mapped[int] = mapped_column(
        ForeignKey("partitions.id", ondelete="CASCADE"), primary_key=True
    )
    factory_id: Mapped[int] = mapped_column(ForeignKey("factories.id"), index=True)
    pending_jobs: Mapped[int] = mapped_column(Integer, default=0)
    latest_start_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    jobs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
