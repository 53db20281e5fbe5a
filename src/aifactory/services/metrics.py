"""Operational metrics for Prometheus, read from the database at scrape time.

The control plane runs as several processes (API workers, the agents of `aif serve`, site
agents on other hosts), so counters kept in one process's memory would each tell a part of the
story and restart at zero with it. Every value here is instead derived from the database when
Prometheus scrapes, by one custom collector (``DatabaseCollector``) that a fresh registry runs
per scrape: whichever process answers, the figures are the federation's.

A scrape is a handful of aggregate queries, each answered from an index or a bounded slice:

- jobs by state and factory (``ix_jobs_busy``), submissions by project and mode;
- hand-over latency, submitted to handed to the site's scheduler, over the latest
  ``HANDOVER_WINDOW`` jobs by id (a moving window, not all history: use ``histogram_quantile``
  on the buckets directly, not on ``rate()``);
- leases (holder, age of the last renewal), controller heartbeats, the oldest placed job;
- site reachability and last contact; GPU-hours granted, used and reserved per factory and
  funding source, from the allocations' running totals (no ledger scan).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from aifactory.db.models import (
    Allocation,
    ControllerBeat,
    Factory,
    Job,
    JobTransition,
    Lease,
    Project,
    SiteStatus,
)
from aifactory.db.wake import BROKER
from aifactory.domain.jobs import JobState
from aifactory.errors import Forbidden
from aifactory.services.permissions import Principal

#: Hand-over latency is measured over this many of the latest jobs (by id).
HANDOVER_WINDOW = 1000
#: Bucket bounds in seconds: a local site takes well under a second, a busy one minutes.
HANDOVER_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
FUNDING = ("digital_europe", "national", "commercial")  # the keys of `aif report` by funding
UNPLACED = "none"


def check_reader(who: Principal) -> None:
    """Metrics are for federation admins (and the scrape token): they cover every factory's
    jobs, ledgers and sites, more than an operator of one factory may see."""
    if not who.is_admin:
        raise Forbidden(
            "metrics cover the whole federation: for federation admins and the scrape token"
        )


class DatabaseCollector(Collector):
    """Collects every aif_ metric from one session, as of ``now``."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    def collect(self) -> Iterator[Metric]:
        names: dict[int, str] = {
            i: n for i, n in self.session.execute(select(Factory.id, Factory.name))
        }
        yield self._jobs(names)
        yield self._submissions()
        yield self._handover()
        yield from self._leases(names)
        yield from self._controllers()
        yield from self._sites(names)
        yield from self._ledger(names)

    def _age(self, then: datetime) -> float:
        return max(0.0, (self.now - then).total_seconds())

    def _jobs(self, names: dict[int, str]) -> Metric:
        family = GaugeMetricFamily(
            "aif_jobs",
            "Jobs by state and the factory they were placed at",
            labels=["state", "factory"],
        )
        rows = self.session.execute(
            select(Job.state, Job.factory_id, func.count()).group_by(Job.state, Job.factory_id)
        )
        for state, fid, count in rows:
            family.add_metric([state, names.get(fid, UNPLACED) if fid else UNPLACED], count)
        return family

    def _submissions(self) -> Metric:
        family = CounterMetricFamily(
            "aif_job_submissions",
            "Jobs ever submitted, by project and its access mode (from the jobs table)",
            labels=["project", "mode"],
        )
        rows = self.session.execute(
            select(Job.project_code, Project.mode, func.count())
            .join(Project, Project.code == Job.project_code)
            .group_by(Job.project_code, Project.mode)
        )
        for project, mode, count in rows:
            family.add_metric([project, mode], count)
        return family

    def _handover(self) -> Metric:
        latencies = handover_latencies(self.session)
        buckets = [(str(b), sum(1 for s in latencies if s <= b)) for b in HANDOVER_BUCKETS]
        family = HistogramMetricFamily(
            "aif_handover_latency_seconds",
            f"Submitted to handed to the site's scheduler, over the latest {HANDOVER_WINDOW} "
            "jobs (a moving window: read the buckets, not their rate)",
        )
        family.add_metric([], [*buckets, ("+Inf", len(latencies))], sum(latencies))
        return family

    def _leases(self, names: dict[int, str]) -> Iterator[Metric]:
        holder = GaugeMetricFamily(
            "aif_lease_holder",
            "1 for the last holder of each lease (aif_lease_valid: still valid)",
            labels=["lease", "holder"],
        )
        age = GaugeMetricFamily(
            "aif_lease_renewal_age_seconds",
            "Time since the lease was last renewed",
            labels=["lease"],
        )
        valid = GaugeMetricFamily(
            "aif_lease_valid", "1 while the lease has not expired", labels=["lease"]
        )
        for lease in self.session.scalars(select(Lease)):
            label = _lease_label(lease.name, names)
            holder.add_metric([label, lease.holder], 1)
            age.add_metric([label], self._age(lease.renewed_at))
            valid.add_metric([label], 1 if lease.expires_at > self.now else 0)
        placed = self.session.execute(
            select(func.min(Job.updated_at)).where(Job.state == JobState.PLACED)
        ).scalar()
        lag = GaugeMetricFamily(
            "aif_handover_backlog_oldest_seconds",
            "How long the oldest placed job has waited for hand-over (0: none waits)",
        )
        lag.add_metric([], self._age(placed) if placed else 0.0)
        yield from (holder, age, valid, lag)

    def _controllers(self) -> Iterator[Metric]:
        seen = GaugeMetricFamily(
            "aif_controller_heartbeat_age_seconds",
            "Time since each controller process last showed it was alive",
            labels=["holder", "host"],
        )
        for beat in self.session.scalars(select(ControllerBeat)):
            seen.add_metric([beat.holder, beat.host], self._age(beat.seen_at))
        yield seen

    def _sites(self, names: dict[int, str]) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "aif_site_up", "1 while the factory's scheduler answers", labels=["factory"]
        )
        contact = GaugeMetricFamily(
            "aif_site_last_contact_age_seconds",
            "Time since the factory's scheduler last answered",
            labels=["factory"],
        )
        status = {row.factory_id: row for row in self.session.scalars(select(SiteStatus))}
        for fid, name in sorted(names.items(), key=lambda kv: kv[1]):
            row = status.get(fid)
            up.add_metric([name], 1 if row is None or row.available else 0)
            if row is not None and row.last_contact_at is not None:
                contact.add_metric([name], self._age(row.last_contact_at))
        yield from (up, contact)

    def _ledger(self, names: dict[int, str]) -> Iterator[Metric]:
        totals = ledger_totals(self.session, names)
        for kind in ("granted", "used", "reserved"):
            family = GaugeMetricFamily(
                f"aif_ledger_{kind}_gpu_hours",
                f"GPU-hours {kind} in allocations, by factory and funding source",
                labels=["factory", "funding"],
            )
            for (factory, funding), values in sorted(totals.items()):
                family.add_metric([factory, funding], float(values[kind]))
            yield family


def _lease_label(name: str, names: dict[int, str]) -> str:
    """``broker`` as is; ``site:<id>`` as ``site:<factory name>``."""
    if name == BROKER or not name.startswith("site:"):
        return name
    fid = name.removeprefix("site:")
    return f"site:{names.get(int(fid), fid)}" if fid.isdigit() else name


def handover_latencies(session: Session, window: int = HANDOVER_WINDOW) -> list[float]:
    """Seconds from submission to the first hand-over, for the latest ``window`` jobs by id
    that were handed over (a retry's later hand-overs do not count)."""
    newest = session.execute(select(func.max(Job.id))).scalar() or 0
    first = (
        select(JobTransition.job_id, func.min(JobTransition.at).label("at"))
        .where(JobTransition.job_id > newest - window)
        .where(JobTransition.to_state == JobState.SUBMITTED)
        .group_by(JobTransition.job_id)
        .subquery()
    )
    rows = session.execute(select(Job.created_at, first.c.at).join(first, first.c.job_id == Job.id))
    return [max(0.0, (at - created).total_seconds()) for created, at in rows]


def ledger_totals(
    session: Session, names: dict[int, str]
) -> dict[tuple[str, str], dict[str, Decimal]]:
    """GPU-hours granted, used and reserved per (factory, funding source): the allocations'
    running totals summed per factory and split, allocation by allocation, by their shares."""
    rows = session.execute(
        select(
            Allocation.factory_id,
            Allocation.eu_share,
            Allocation.national_share,
            Allocation.commercial_share,
            func.sum(Allocation.granted_milli),
            func.sum(Allocation.used_milli),
            func.sum(Allocation.reserved_milli),
        ).group_by(
            Allocation.factory_id,
            Allocation.eu_share,
            Allocation.national_share,
            Allocation.commercial_share,
        )
    )
    out: dict[tuple[str, str], dict[str, Decimal]] = {}
    for fid, eu, national, commercial, granted, used, reserved in rows:
        milli = {"granted": granted or 0, "used": used or 0, "reserved": reserved or 0}
        for funding, share in zip(FUNDING, (eu, national, commercial), strict=True):
            sums = out.setdefault(
                (names.get(fid, str(fid)) if fid is not None else "federation", funding),
                dict.fromkeys(milli, Decimal(0)),
            )
            for kind, value in milli.items():
                sums[kind] += Decimal(value) * Decimal(share) / 1000
    return out
