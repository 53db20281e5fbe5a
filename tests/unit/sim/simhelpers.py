"""Small builders shared by the simulator unit tests."""

from __future__ import annotations

from aifactory.sim.engine import SimResult, make_sites, simulate
from aifactory.sim.model import Job, SiteSpec


def job(jid: int, submit: int, width: int, req: int, run: int | None = None) -> Job:
    return Job(jid, submit, req if run is None else min(run, req), req, width)


def run_one(jobs: list[Job], capacity: int, policy: str) -> SimResult:
    return simulate(jobs, make_sites([SiteSpec("m", capacity)], policy))


def starts(result: SimResult) -> dict[int, int]:
    return {j.id: j.start for j in result.jobs}
