"""Core simulator records: jobs, traces and site specifications.

Times are integer seconds from the start of the trace. A job's ``width`` is counted in the
site's allocation unit: processors for SWF traces, GPUs for GPU traces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Job", "SiteSpec", "Trace"]


@dataclass(slots=True, eq=False)
class Job:
    """One rigid job. The first block is input; ``start``, ``end`` and ``site`` are results.

    Attributes:
        id: Job number from the trace.
        submit: Submit time (s).
        run: Actual run time (s), already capped at ``req``.
        req: Requested time, the user's estimate (s); schedulers only ever see this.
        width: Processors or GPUs the job holds while it runs.
        user: User id (or another grouping key) from the trace, -1 when unknown.
        line: Line of the trace file the job came from (1-based), 0 when generated.
        home: Index of the job's home site in federation mode, -1 when none.
    """

    id: int
    submit: int
    run: int
    req: int
    width: int
    user: int = -1
    line: int = 0
    home: int = -1
    start: int = -1
    end: int = -1
    site: int = -1


@dataclass(slots=True)
class Trace:
    """Jobs in submit order plus what the source said about the machine."""

    name: str
    jobs: list[Job]
    capacity: int | None
    unit: str = "procs"
    skipped_lines: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SiteSpec:
    """A site (one uniform partition) as the simulator sees it."""

    name: str
    nodes: int
    units_per_node: int = 1
    country: str = "EU"
    policy: str | None = None
    operational: bool = True
    gpu_model: str | None = None
    gpu_memory_gb: float | None = None
    charge_factor: float = 1.0
    budget_gpu_hours: float | None = None

    @property
    def capacity(self) -> int:
        """Allocation units (processors or GPUs) in the partition."""
        return self.nodes * self.units_per_node
