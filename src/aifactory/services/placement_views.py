"""Every candidate of a job as placement sees it now: verdict, reason, queue and start estimate.

``jobs why`` (API, CLI, portal) lists each partition the job's project is entitled to, with the
broker policy's verdict and the figures behind it: free GPUs of total, the GPU-hours queued
ahead, and the expected start with its basis (the site scheduler's own estimate, or one from
the queue; see ``broker.placement.estimate_start``). A site without the GPUs free never shows a
start of "now".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from aifactory.broker.placement import (
    JobRequest,
    get_placement_policy,
    preference_rank,
    start_basis,
)
from aifactory.db.models import Job, SiteQueue
from aifactory.domain.jobs import ACTIVE, JobState
from aifactory.domain.jobspec import JobSpec
from aifactory.services.candidates import Candidate, job_request, site_candidates
from aifactory.services.job_views import CandidateView
from aifactory.services.jobs import POLICY
from aifactory.services.queue_state import with_queue_state

__all__ = ["live_candidates"]

_AT_SITE = {
    JobState.PLACED: "placed here; the site agent hands it to the scheduler next",
    JobState.SUBMITTED: "handed to the site's scheduler",
    JobState.QUEUED: "queued at the site's scheduler",
    JobState.RUNNING: "running here",
    JobState.LOST: "the site's scheduler no longer reports it; waiting for its accounting",
}


def live_candidates(
    session: Session, job: Job, capacity: Mapping[str, int | None], now: datetime
) -> list[CandidateView]:
    """The job's candidates now, best first, then the rejected ones (empty for a job whose
    spec no longer validates)."""
    try:
        request = job_request(JobSpec.model_validate(job.spec))
    except ValidationError:
        return []
    cands = site_candidates(session, job.project_code, now, capacity)
    cands = with_queue_state(session, cands, now, job)
    decision = get_placement_policy(POLICY).place(
        request, tuple(c.view for c in cands), now.timestamp()
    )
    by_name = {c.view.name: c for c in cands}
    held = session.scalar(select(SiteQueue).where(SiteQueue.job_id == job.id))
    ts = now.timestamp()
    here = [c for c in cands if job.state in ACTIVE and c.partition_id == job.partition_id]
    out = [_here(job, request, c, ts) for c in here]
    for name in decision.ranked:
        c = by_name[name]
        if c in here:
            continue
        view = _ranked(request, c, decision.est_start_s[name] - ts)
        if held is not None and held.pool == c.pool and job.state == JobState.PENDING:
            view.est_start_s = round(max((held.start_at - now).total_seconds(), 0.0), 1)
            view.basis = "reservation"
            view.reason += f"; next in line here for {held.gpus} GPUs"
        out.append(view)
    out += [
        _view(request, by_name[name], "rejected", reason)
        for name, reason in decision.rejected.items()
        if by_name[name] not in here
    ]
    return out


def _view(
    request: JobRequest,
    c: Candidate,
    verdict: str,
    reason: str,
    start_in: float | None = None,
    basis: str | None = None,
) -> CandidateView:
    v = c.view
    return CandidateView(
        site=v.name,
        verdict=verdict,
        reason=reason,
        free_gpus=v.free_gpus,
        total_gpus=v.total_gpus,
        queued_gpu_hours=round(v.queued_gpu_seconds / 3600, 2),
        running_jobs=len(v.running_ends),
        est_start_s=None if start_in is None else round(max(start_in, 0.0), 1),
        basis=basis,
        charge_factor=c.charge_factor,
        preferred=preference_rank(request, v.name) is not None,
    )


def _ranked(request: JobRequest, c: Candidate, start_in: float) -> CandidateView:
    """A site that can run the job: it would start now, or it waits (and why)."""
    v = c.view
    basis = start_basis(request, v)
    queued = v.queued_gpu_seconds / 3600
    ahead = f"{queued:.1f} GPU-hours queued ahead" if queued > 0 else ""
    if basis == "free":
        verdict, reason = "would start", f"fits: {v.free_gpus} of {v.total_gpus} GPUs free"
    elif v.free_gpus >= request.gpus:
        verdict, reason = "waits", f"{v.free_gpus} of {v.total_gpus} GPUs free, but {ahead}"
    else:
        verdict = "waits"
        reason = f"needs {request.gpus} GPUs, {v.free_gpus} of {v.total_gpus} free"
        reason += f"; {ahead}" if ahead else ""
    if basis == "slurm":
        reason += "; the site's Slurm estimates the start"
    return _view(request, c, verdict, reason, start_in, basis)


def _here(job: Job, request: JobRequest, c: Candidate, now: float) -> CandidateView:
    """The site the job is placed at, queued at or running at."""
    state = JobState(job.state)
    scheduler = c.view.est_start_s if state in (JobState.SUBMITTED, JobState.QUEUED) else None
    if scheduler is not None and scheduler > now:
        start, basis = scheduler - now, "slurm"
    else:
        start, basis = 0.0, "placed"
    return _view(request, c, "chosen", _AT_SITE.get(state, str(state)), start, basis)
