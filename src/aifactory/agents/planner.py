"""The broker's decisions for one pass, as records the reconciler writes.

The decisions themselves are ``broker.admission`` (pure: fair order, EASY per pool, budgets per
allocation), the code the simulator's central mode calls too. This adapter hands it what the
pass read and turns its decisions into the rows' placement records (``services.jobs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aifactory.broker.admission import Admission, Decisions, Pending, Pool, Spec, fair_order
from aifactory.broker.placement import PlacementPolicy
from aifactory.domain.jobs import JobState
from aifactory.services import jobs as job_service
from aifactory.services.candidates import Candidate

__all__ = ["Pending", "Plan", "Planner", "Pool", "Spec", "at", "fair_order"]


@dataclass
class Plan:
    """What one pass decided, applied after the read transaction ends."""

    place: list[tuple[int, list[Candidate], dict[str, Any]]] = field(default_factory=list)
    end: list[tuple[int, JobState, str, dict[str, Any] | None]] = field(default_factory=list)
    notes: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)


class Planner:
    """Decides one pass in memory (``broker.admission``) and shapes the records to write."""

    def __init__(
        self,
        policy: PlacementPolicy,
        now: datetime,
        candidates: dict[str, list[Candidate]],
        pools: dict[str, Pool],
        siblings: dict[int, int],
    ) -> None:
        self.now = now
        self.admission = Admission(policy, now.timestamp(), candidates, pools, siblings)

    def plan(self, jobs: Sequence[Pending]) -> Plan:
        return self.records(self.admission.decide(jobs))

    def records(self, decided: Decisions[Candidate]) -> Plan:
        now, record = self.now, job_service.placement_record
        out = Plan()
        for p in decided.place:
            out.place.append((p.job, p.ready, record(now, p.ranked, p.rejected)))
        for e in decided.end:
            last = None if e.rejected is None else record(now, (), e.rejected)
            out.end.append((e.job, e.state, e.reason, last))
        for w in decided.waits:
            starts = {name: at(ts, now) for name, ts in w.est_start.items()}
            rec = record(now, w.ranked, w.rejected, waiting=w.reason, est_start=starts)
            out.notes.append((w.job, w.reason, rec))
        return out


def at(ts: float, now: datetime) -> datetime:
    """A pass's float time as a datetime in ``now``'s zone, never before ``now``."""
    return datetime.fromtimestamp(max(ts, now.timestamp()), tz=now.tzinfo)
