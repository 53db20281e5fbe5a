"""The simulator's central admission decides as the live broker does.

The same seven jobs on two sites of 8 GPUs each (LUMI AIF, charge factor 1.0, ranked first;
Meluxina-AI, 1.2), submitted and completed at the same (virtual) seconds, go through:

* the live system: the REST API (submissions), the broker's passes and two site agents with
  local executors. Each job's process waits for its own gate file, so the test decides when it
  ends; the clock of the API, the broker and the agents is a virtual one the test moves, and
  the executors report start and end times on that clock;
* ``run_trace`` with ``sites`` (central admission, the default for federation runs).

Both must put every job on the same site, start them in the same order at the same second.
One job (8 GPUs) must wait until a site is wholly free, and one (2 GPUs) must wait because it
would delay it, then starts on the other site.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.agents import handover, reconciler, recording, site_agent
from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Job, JobTransition, Partition, System
from aifactory.db.types import utcnow
from aifactory.domain.jobs import JobState
from aifactory.settings import Settings
from aifactory.sim.model import Job as SimJob
from aifactory.sim.model import SiteSpec, Trace
from aifactory.sim.runner import run_trace
from aifactory.testing.access import award, entitle, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"
SITES = ("LUMI AIF", "Meluxina-AI")
WAIT = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)"
# name: (submit s, GPUs, time limit s, run s): the run is when the test lets it end.
JOBS = {
    "j1": (0, 6, 3600, 1200),
    "j2": (0, 4, 3600, 600),
    "j3": (0, 8, 3600, 500),  # waits: no site has 8 free until j1 and j4 have ended
    "j4": (0, 2, 1800, 1700),  # ends before j3's turn (3600): starts beside j1
    "j5": (0, 3, 1800, 1500),
    "j6": (900, 4, 3600, 1200),
    "j7": (1300, 2, 600, 300),  # would delay j3 (now due at 1800) on LUMI: waits, then B
}


class Virtual:
    """A local executor whose start and end times are read on the test's clock."""

    def __init__(self, inner: Any, now: Callable[[], datetime]) -> None:
        self.inner, self.now = inner, now
        self.seen: dict[tuple[str, str], float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _at(self, key: tuple[str, str], real: float | None) -> float | None:
        return None if real is None else self.seen.setdefault(key, self.now().timestamp())

    def poll(self, ids: list[str]) -> dict[str, Any]:
        out = {}
        for bid, status in self.inner.poll(ids).items():
            started = self._at(("start", bid), status.started_at)
            ended = self._at(("end", bid), status.ended_at)
            out[bid] = dataclasses.replace(status, started_at=started, ended_at=ended)
        return out

    def usage(self, bid: str) -> Any:
        used = self.inner.usage(bid)
        start, end = self.seen.get(("start", bid)), self.seen.get(("end", bid))
        if used is None or start is None or end is None:
            return used
        return dataclasses.replace(used, elapsed_s=end - start)


@pytest.fixture
def live(
    db: Database,
    settings: Settings,
    operator: Person,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, Any]]:
    clock = [utcnow().replace(microsecond=0)]

    def now() -> datetime:
        return clock[0]

    for module in (reconciler, recording, site_agent, handover):
        monkeypatch.setattr(module, "utcnow", now)
    settings = settings.model_copy(update={"local_gpus_per_site": 8, "lease_ttl_s": 600.0})
    # Jobs run as the job user, who cannot look into pytest's private tmp_path.
    gates = Path(tempfile.mkdtemp(prefix="aif-gates-"))
    gates.chmod(0o755)
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        api.app.state.clock = now  # type: ignore[attr-defined]
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, first = award(api, anna, operator, hours=5000)
        names = _second_allocation(db, first)
        runner = AgentRunner(settings, db, sites=list(SITES))
        for agent in runner.agents:
            agent.executor = Virtual(agent.executor, now)  # type: ignore[assignment]
        yield {"api": api, "anna": anna, "code": code, "runner": runner, "db": db,
               "clock": clock, "gates": gates, "names": names}  # fmt: skip
    shutil.rmtree(gates, ignore_errors=True)


def _second_allocation(db: Database, first: int) -> dict[int, str]:
    """The project's allocation on Meluxina-AI too, with its grant; factory id -> site name."""
    second = entitle(db, first, SITES[1], 5_000_000)
    with db.session() as s:
        rows = s.execute(
            select(Factory.id, Factory.name, System.name, Partition.name)
            .join(System, System.factory_id == Factory.id)
            .join(Partition, Partition.system_id == System.id)
            .join(Allocation, Allocation.partition_id == Partition.id)
            .where(Allocation.id.in_([first, second]))
        ).all()
    return {fid: f"{f}/{sy}/{p}" for fid, f, sy, p in rows}


def _settled(env: dict[str, Any]) -> Callable[[], bool]:
    """Every placed job runs (its start seen on the clock) and the broker has had its pass."""

    def done() -> bool:
        with env["db"].session() as s:
            busy = s.scalars(
                select(Job.state).where(
                    Job.state.in_([JobState.PLACED, JobState.SUBMITTED, JobState.QUEUED])
                )
            ).all()
        return not busy and env["runner"].broker.backlog.passes > env["mark"]

    return done


def _step(env: dict[str, Any]) -> None:
    env["mark"] = env["runner"].broker.backlog.passes
    run_until(env["runner"], _settled(env))


def _drive_live(env: dict[str, Any]) -> list[tuple[str, str, int]]:
    ids: dict[str, int] = {}
    ends: list[tuple[int, str]] = []  # (time, job): known once the job has started
    base = env["clock"][0]
    arrivals = sorted((sub, name) for name, (sub, *_) in JOBS.items())
    while arrivals or ends:
        t = min([a[0] for a in arrivals[:1]] + [e[0] for e in ends[:1]])
        env["clock"][0] = base + timedelta(seconds=t)
        while ends and ends[0][0] == t:  # completions first, as the simulator's default
            _, name = ends.pop(0)
            (env["gates"] / name).touch()
            run_until(env["runner"], lambda n=name: _state(env, ids[n]) == JobState.COMPLETED)
        while arrivals and arrivals[0][0] == t:
            _, name = arrivals.pop(0)
            _, gpus, limit, _ = JOBS[name]
            body = spec(env["code"], [PY, "-c", WAIT, str(env["gates"] / name)], name=name,
                        resources={"gpus_per_node": gpus, "time_limit": limit})  # fmt: skip
            job = ok(env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=body), 201)
            ids[name] = job["id"]
            _step(env)
        _step(env)
        for name, start in _started(env, ids).items():
            end = start - int(base.timestamp()) + JOBS[name][3]
            if all(n != name for _, n in ends) and end > t:
                ends.append((end, name))
        ends.sort()
    return _order(env, ids, base)


def _state(env: dict[str, Any], job_id: int) -> str:
    with env["db"].session() as s:
        return str(s.get_one(Job, job_id).state)


def _started(env: dict[str, Any], ids: dict[str, int]) -> dict[str, int]:
    with env["db"].session() as s:
        rows = s.execute(select(Job.name, Job.started_at).where(Job.id.in_(ids.values()))).all()
    return {name: int(at.timestamp()) for name, at in rows if at is not None}


def _order(env: dict[str, Any], ids: dict[str, int], base: datetime) -> list[tuple[str, str, int]]:
    """(job, site, start s) in the order the live system placed them."""
    with env["db"].session() as s:
        placed = s.scalars(
            select(JobTransition.job_id)
            .where(JobTransition.to_state == JobState.PLACED)
            .order_by(JobTransition.id)
        ).all()
        jobs = {j.id: j for j in s.scalars(select(Job).where(Job.id.in_(ids.values())))}
        out = []
        for job_id in placed:
            j = jobs[job_id]
            assert j.started_at is not None
            start = int(j.started_at.timestamp() - base.timestamp())
            out.append((j.name, env["names"][j.factory_id], start))
    return out


def _simulate(names: dict[int, str]) -> list[tuple[str, str, int]]:
    lumi = next(n for n in names.values() if n.startswith(SITES[0]))
    melux = next(n for n in names.values() if n.startswith(SITES[1]))
    sites = [SiteSpec(lumi, 1, 8, "FI", charge_factor=1.0),
             SiteSpec(melux, 1, 8, "LU", charge_factor=1.2)]  # fmt: skip
    jobs = [SimJob(i, sub, run, limit, gpus, user=0)
            for i, (sub, gpus, limit, run) in enumerate(JOBS.values())]  # fmt: skip
    result = run_trace(Trace("live", jobs, None, "gpus"), "easy", sites=sites).result
    label = list(JOBS)
    ordered = sorted(result.jobs, key=lambda j: (j.start, _placed_seq(result, j)))
    return [(label[j.id], sites[j.site].name, j.start) for j in ordered]


def _placed_seq(result: Any, job: SimJob) -> int:
    return job.id  # equal starts: decided in arrival order (one project, one pass each)


def test_the_simulator_places_and_orders_jobs_as_the_live_broker(live: dict[str, Any]) -> None:
    observed = _drive_live(live)
    simulated = _simulate(live["names"])
    assert [name for name, _, _ in observed] == [name for name, _, _ in simulated]
    assert observed == simulated
    by_name = {n: (site, start) for n, site, start in observed}
    assert by_name["j3"][1] == 1700 and by_name["j3"][0].startswith("LUMI AIF")
    assert by_name["j7"][1] == 1500 and by_name["j7"][0].startswith("Meluxina-AI")
