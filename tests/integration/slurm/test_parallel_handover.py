"""Hand-overs in parallel: many placed jobs go to Slurm at once, each exactly once.

The site agent looks a pass's batch up by name in one call, then runs several sbatch at a
time and records each job in its own fenced transaction as soon as its sbatch returns. These
tests run it against the scripted Slurm of test_slurm_job_ends.py, with sbatch made slow
enough that submissions overlap.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_slurm_job_ends import ScriptedSlurm, Site
from test_slurm_job_ends import site as site  # the fixture these tests use

from aifactory.agents import handover
from aifactory.db.models import Job
from aifactory.errors import BackendUnavailable
from aifactory.executors.slurm.failures import submit_error
from aifactory.executors.slurm.models import SlurmJob
from aifactory.executors.slurm.script import RenderedScript
from aifactory.settings import Settings
from aifactory.testing.jobs import spec

API = "/api/v1"
JOBS = 24


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Room for every job of these tests at once (the default is 8 GPUs a site)."""
    return Settings(data_dir=tmp_path / "data", local_gpus_per_site=1024)


class SlowSlurm(ScriptedSlurm):
    """sbatch takes a while (as a real one waits on slurmctld); counts overlap and lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.names: list[str] = []
        self.lookups: list[int] = []  # names per find_many call
        self.single_finds = 0
        self.explode: set[str] = set()  # names whose sbatch raises something unexpected

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.names.append(rendered.name)
        try:
            time.sleep(0.05)
            if rendered.name in self.explode:
                raise RuntimeError("sbatch wrapper crashed")
            with self.lock:
                return super().submit(rendered, run_as)
        finally:
            with self.lock:
                self.in_flight -= 1

    def find(self, name: str) -> SlurmJob | None:
        self.single_finds += 1
        return super().find(name)

    def find_many(self, names: Any) -> dict[str, SlurmJob]:
        self.lookups.append(len(names))
        return {n: j for n in names if (j := ScriptedSlurm.find(self, n)) is not None}


def _slow(site: Site) -> SlowSlurm:
    slurm = SlowSlurm()
    site.agent.executor.backend = slurm  # type: ignore[attr-defined]
    site.slurm = slurm
    return slurm


def _submit_many(site: Site, n: int) -> list[int]:
    body = spec(site.code, ["train"], resources={"gpus_per_node": 1})
    headers = site.anna.headers
    return [
        int(site.api.post(f"{API}/jobs", headers=headers, json=body).json()["id"]) for _ in range(n)
    ]


def test_many_placed_jobs_are_submitted_concurrently_each_exactly_once(site: Site) -> None:
    slurm = _slow(site)
    ids = _submit_many(site, JOBS)
    site.ticks(3)
    assert sorted(slurm.names) == sorted(set(slurm.names)) and len(slurm.names) == JOBS
    assert slurm.most_in_flight > 1  # they overlapped
    assert slurm.lookups[0] == JOBS and slurm.single_finds == 0  # one lookup for the batch
    backend_ids = [site.backend_id(i) for i in ids]
    assert sorted(backend_ids) == sorted(slurm.live) and len(set(backend_ids)) == JOBS
    for job_id in ids:
        job = site.job(job_id)
        assert job["state"] == "queued" and len(job["attempts"]) == 1
        assert [t["to_state"] for t in job["transitions"]].count("submitted") == 1


def test_a_submission_that_blows_up_loses_none_of_the_others(site: Site) -> None:
    slurm = _slow(site)
    ids = _submit_many(site, 6)
    slurm.explode = set(_names(site, [ids[2]]))
    cut = submit_error("sbatch", 255, "", "client_loop: send disconnect: Broken pipe")
    slurm.sbatch_failures = [(cut, True)]  # the first sbatch: submitted, answer lost
    site.ticks(3)
    states = {i: site.job(i)["state"] for i in ids}
    # An sbatch that blew up may have reached Slurm: the job waits until that is settled.
    assert states.pop(ids[2]) == "placed" and ids[2] in site.agent.handover.waiting
    assert set(states.values()) == {"queued"}  # the cut one was found by its name
    assert len(slurm.live) == 5 and len(slurm.names) == 6  # nothing submitted twice


def test_a_crash_between_sbatch_and_its_record_is_found_by_name_not_resubmitted(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    slurm = _slow(site)
    ids = _submit_many(site, 4)
    record = handover.HandOver._record
    crashed: list[int] = []

    def crash_once(self: handover.HandOver, spec: Any, backend_id: str, s: Any, job: Any) -> None:
        if job.id == ids[1] and not crashed:
            crashed.append(job.id)
            raise BackendUnavailable("the agent died here")  # stops the pass, like a crash
        record(self, spec, backend_id, s, job)

    monkeypatch.setattr(handover.HandOver, "_record", crash_once)
    site.ticks()
    assert crashed and site.job(ids[1])["state"] == "placed"  # submitted, not recorded
    site.agent._retry_at = 0.0  # no back-off wait in a test
    site.ticks(2)
    assert {site.job(i)["state"] for i in ids} == {"queued"}
    assert len(slurm.names) == 4 and len(slurm.live) == 4  # the lookup found it
    assert site.backend_id(ids[1]) in slurm.live


def _names(site: Site, ids: list[int]) -> list[str]:
    """The Slurm job names (idempotency keys) of the jobs' current attempts."""
    with site.db.session() as s:
        return [f"aif-{s.get_one(Job, i).exec_id}-1" for i in ids]
