"""Start estimates from a site's own scheduler (capability ``start_estimates``).

A backend that can say when its pending jobs are expected to start (Slurm's
``squeue --start``) offers :meth:`StartEstimator.start_estimates`; the site agent records the
answer per partition so that placement and ``jobs why`` can prefer the scheduler's own figure to
one computed from the queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["QueueEstimate", "StartEstimator"]


@dataclass(frozen=True, slots=True)
class QueueEstimate:
    """What the scheduler expects of one partition's pending jobs.

    Attributes:
        pending: Jobs pending there.
        latest_start: The latest expected start (epoch seconds) among them: a job submitted now
            starts no earlier, as the scheduler sees it; ``None`` when it gave no estimate.
        jobs: Expected start per scheduler job id, for the jobs it estimated.
    """

    pending: int = 0
    latest_start: float | None = None
    jobs: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class StartEstimator(Protocol):
    """A backend that knows when its pending jobs are expected to start."""

    def start_estimates(self, partitions: Sequence[str]) -> dict[str, QueueEstimate]:
        """One estimate per partition named (the platform's names), empty ones included.

        Raises:
            BackendUnavailable: The scheduler does not answer now.
        """
        ...
