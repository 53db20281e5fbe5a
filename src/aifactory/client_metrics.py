"""The client's call for a job's training metrics (mixed into ``Client``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

if TYPE_CHECKING:
    from aifactory.services.job_metrics_views import JobMetrics

M = TypeVar("M", bound=BaseModel)


class MetricsCalls:
    """``/api/v1/jobs/{id}/metrics``."""

    def _call(self, method: str, path: str, model: type[M], **kwargs: Any) -> M:
        raise NotImplementedError

    def job_metrics(self, job_id: int) -> JobMetrics:
        """The ``step=N key=value`` series the job's current attempt printed."""
        from aifactory.services.job_metrics_views import JobMetrics

        return self._call("GET", f"/jobs/{int(job_id)}/metrics", JobMetrics)
