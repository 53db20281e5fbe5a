"""How a Slurm job ends, through a real site agent and ledger, on a scripted Slurm.

The Slurm executor runs on a fake backend whose controller and accounting are set by each test:
lost jobs (the controller forgets, accounting does or does not know), node failures and
preemptions with managed retry, unclear and temporary sbatch failures. Each attempt must be
charged exactly once, from Slurm's own times, and no budget may stay reserved for a job that is
over. (The same paths on real clusters: test_slurm_ends_real.py.)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aifactory.agents.recording import LOST_REASON
from aifactory.agents.runner import AgentRunner
from aifactory.agents.site_agent import SiteAgent
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation
from aifactory.domain.ledger import usage_milli
from aifactory.errors import AIFactoryError, BackendUnavailable
from aifactory.executors.slurm import SlurmExecutor
from aifactory.executors.slurm.failures import submit_error
from aifactory.executors.slurm.models import SlurmJob, SlurmNode
from aifactory.executors.slurm.script import RenderedScript
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import spec
from aifactory.testing.people import Person

API = "/api/v1"


class ScriptedSlurm:
    """A Slurm backend whose controller (``live``) and accounting (``records``) tests set."""

    def __init__(self) -> None:
        self.live: dict[str, SlurmJob] = {}  # what squeue reports
        self.records: dict[str, SlurmJob] = {}  # what sacct reports
        self.sbatch_failures: list[tuple[AIFactoryError, bool]] = []
        self.sbatch_calls = 0
        self.down = False
        self.admin = None

    def prepare(self, rendered: RenderedScript, run_as: str | None = None) -> None:
        pass

    def submit(self, rendered: RenderedScript, run_as: str | None = None) -> str:
        self.sbatch_calls += 1
        job_id = str(5000 + self.sbatch_calls)
        failure = self.sbatch_failures.pop(0) if self.sbatch_failures else None
        if failure is None or failure[1]:
            self.live[job_id] = SlurmJob(job_id, name=rendered.name, gpus=rendered.nodes * 2)
        if failure is not None:
            raise failure[0]
        return job_id

    def find(self, name: str) -> SlurmJob | None:
        self._answer()
        return next((j for j in self.live.values() if j.name == name), None)

    def jobs(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        self._answer()
        found = {i: self.live[i] for i in job_ids if i in self.live}
        for i in job_ids:  # like CliBackend: only a finished record stands in for a job
            record = self.records.get(i)
            if i not in found and record is not None and record.exec_state.terminal:
                found[i] = record
        return found

    def states(self, job_ids: Iterable[str]) -> dict[str, SlurmJob]:
        return self.jobs(list(job_ids))

    def find_many(self, names: Sequence[str]) -> dict[str, SlurmJob]:
        return {n: j for n in names if (j := self.find(n)) is not None}

    def _answer(self) -> None:
        if self.down:
            raise BackendUnavailable("squeue: Slurm is unreachable: Unable to contact slurm")

    def cancel(self, job_id: str) -> None:
        pass

    def accounting(self, job_id: str) -> SlurmJob | None:
        return self.records.get(job_id)

    def runs(self, job_id: str) -> list[SlurmJob]:
        return [self.records[job_id]] if job_id in self.records else []

    def nodes(self) -> list[SlurmNode]:
        return []

    def set(self, job_id: str, **changes: Any) -> None:
        self.live[job_id] = replace(self.live[job_id], **changes)


@dataclass
class Site:
    api: TestClient
    anna: Person
    code: str
    alloc: int
    db: Database
    runner: AgentRunner
    agent: SiteAgent
    slurm: ScriptedSlurm

    def submit(self, **extra: Any) -> int:
        body = spec(self.code, ["train"], resources={"gpus_per_node": 2}, **extra)
        return int(
            ok(self.api.post(f"{API}/jobs", headers=self.anna.headers, json=body), 201)["id"]
        )

    def job(self, job_id: int) -> dict[str, Any]:
        return ok(self.api.get(f"{API}/jobs/{job_id}", headers=self.anna.headers))  # type: ignore[no-any-return]

    def ticks(self, n: int = 1) -> None:
        for _ in range(n):
            self.runner.tick()

    def backend_id(self, job_id: int) -> str:
        attempts = self.job(job_id)["attempts"]
        return str(attempts[-1]["backend_id"])

    def ledger(self) -> tuple[int, int]:
        with self.db.session() as s:
            row = s.get_one(Allocation, self.alloc)
            return row.reserved_milli, row.used_milli


@pytest.fixture
def site(db: Database, settings: Settings, operator: Person) -> Iterator[Site]:
    settings = settings.model_copy(update={"lost_grace_s": 600.0})
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, alloc = award(api, anna, operator, hours=100)
        runner = AgentRunner(settings, db, broker=True)
        agent = next(a for a in runner.agents if a.name == "LUMI AIF")
        slurm = ScriptedSlurm()
        agent.executor = SlurmExecutor(
            backend=slurm, job_root="/jobs", require_site_account=False, command_timeout_s=10
        )
        for other in runner.agents:  # only LUMI AIF may run jobs in these tests
            if other is not agent:
                runner.agents.remove(other)
        yield Site(api, anna, code, alloc, db, runner, agent, slurm)


def _run(site: Site, job_id: int, start: float = 1000.0) -> str:
    site.ticks(2)
    backend_id = site.backend_id(job_id)
    site.slurm.set(backend_id, state="RUNNING", start=start, nodes="n1")
    site.ticks()
    assert site.job(job_id)["state"] == "running"
    return backend_id


def _charge(gpus: int, seconds: int, factor: str = "1.0") -> int:
    return usage_milli(gpus, timedelta(seconds=seconds), Decimal(factor))


def test_a_job_the_scheduler_forgets_is_lost_then_failed_after_the_grace_uncharged(
    site: Site,
) -> None:
    job_id = site.submit()
    backend_id = _run(site, job_id)
    del site.slurm.live[backend_id]  # gone from squeue; this site has no accounting record
    site.ticks()
    lost = site.job(job_id)
    assert lost["state"] == "lost" and site.ledger()[0] > 0  # still reserved while lost
    site.ticks(3)
    assert site.job(job_id)["state"] == "lost"  # within the grace nothing else happens
    site.agent.lost_grace = timedelta(seconds=0.2)
    time.sleep(0.3)
    site.ticks()
    done = site.job(job_id)
    assert done["state"] == "failed" and done["reason"] == LOST_REASON
    assert site.ledger() == (0, 0)  # reservation released, nothing charged
    assert [t["to_state"] for t in done["transitions"]][-2:] == ["lost", "failed"]


def test_a_lost_job_is_settled_from_accounting_and_charged_once(site: Site) -> None:
    job_id = site.submit()
    backend_id = _run(site, job_id)
    gone = site.slurm.live.pop(backend_id)
    site.slurm.records[backend_id] = replace(gone, state="RUNNING")  # a runaway record
    site.ticks(2)
    assert site.job(job_id)["state"] == "lost"
    site.slurm.records[backend_id] = replace(
        gone, state="COMPLETED", exit_code=0, end=1090.0, elapsed_s=90.0
    )
    site.ticks(3)
    done = site.job(job_id)
    assert (done["state"], done["exit_code"]) == ("completed", 0)
    (attempt,) = done["attempts"]
    assert attempt["elapsed_s"] == 90
    assert site.ledger() == (0, _charge(2, 90))


def test_a_lost_job_that_reappears_goes_back_to_running(site: Site) -> None:
    job_id = site.submit()
    backend_id = _run(site, job_id)
    job = site.slurm.live.pop(backend_id)
    site.ticks()
    assert site.job(job_id)["state"] == "lost"
    site.slurm.live[backend_id] = job
    site.ticks()
    assert site.job(job_id)["state"] == "running"
    site.slurm.set(backend_id, state="COMPLETED", exit_code=0, end=1030.0)
    site.ticks()
    assert site.job(job_id)["state"] == "completed" and site.ledger() == (0, _charge(2, 30))


def test_nothing_is_lost_while_the_site_does_not_answer(site: Site) -> None:
    job_id = site.submit()
    _run(site, job_id)
    site.slurm.down = True
    site.slurm.live.clear()
    assert site.agent.tick() is False
    site.slurm.down = False
    assert site.job(job_id)["state"] == "running"


@pytest.mark.parametrize(
    ("slurm_state", "state", "retry_on", "retried"),
    [
        ("NODE_FAIL", "node_failed", ["node_failed"], True),
        ("PREEMPTED", "preempted", ["preempted"], True),
        ("PREEMPTED", "preempted", ["node_failed"], False),
        ("BOOT_FAIL", "node_failed", ["node_failed"], True),
        ("OUT_OF_MEMORY", "failed", ["node_failed"], False),
    ],
)
def test_each_end_is_its_own_state_and_retry_on_can_name_it(
    site: Site, slurm_state: str, state: str, retry_on: list[str], retried: bool
) -> None:
    job_id = site.submit(retry={"max_attempts": 2, "on": retry_on})
    backend_id = _run(site, job_id)
    site.slurm.set(backend_id, state=slurm_state, end=1042.0, exit_code=None)
    site.ticks()
    job = site.job(job_id)
    first = job["attempts"][0]
    assert first["state"] == state and first["elapsed_s"] == 42
    assert Decimal(first["charged_gpu_hours"]) * 1000 == _charge(2, 42)
    if retried:
        assert job["attempt"] == 2
        second = _run(site, job_id, start=1100.0)
        assert second != backend_id
        site.slurm.set(second, state="COMPLETED", exit_code=0, end=1130.0)
        site.ticks()
        assert site.job(job_id)["state"] == "completed"
        assert site.ledger() == (0, _charge(2, 42) + _charge(2, 30))  # each run, once
    else:
        assert job["state"] == state and site.ledger() == (0, _charge(2, 42))


def test_an_sbatch_cut_off_after_submitting_is_recorded_once_and_not_refused(site: Site) -> None:
    site.slurm.sbatch_failures = [(submit_error("sbatch", 255, "", "client_loop: send "
                                                "disconnect: Broken pipe"), True)]  # fmt: skip
    job_id = site.submit()
    site.ticks(3)
    job = site.job(job_id)
    assert job["state"] == "queued" and site.slurm.sbatch_calls == 1
    assert [a["backend_id"] for a in job["attempts"]] == list(site.slurm.live)


def test_a_temporary_refusal_keeps_the_job_placed_and_the_site_available(site: Site) -> None:
    busy = submit_error("sbatch", 1, "", "Batch job submission failed: Resource temporarily "
                                         "unavailable")  # fmt: skip
    site.slurm.sbatch_failures = [(busy, False)] * 3
    site.agent.executor.submitter.sleep = lambda s: None  # type: ignore[attr-defined]
    job_id = site.submit()
    site.ticks(2)
    assert site.job(job_id)["state"] == "placed" and site.ledger()[0] > 0
    assert site.agent.backoff_s == 0  # the site is not marked unavailable
    assert job_id in site.agent.handover.waiting
    site.agent.handover.waiting.clear()
    site.agent.executor.submitter._unsettled.clear()  # type: ignore[attr-defined]
    site.ticks(2)
    assert site.job(job_id)["state"] == "queued" and site.slurm.sbatch_calls == 4


def test_a_refused_sbatch_fails_the_job_and_frees_its_budget(site: Site) -> None:
    refused = submit_error("sbatch", 1, "", "Batch job submission failed: Invalid account or "
                                            "account/partition combination specified")  # fmt: skip
    site.slurm.sbatch_failures = [(refused, False)]
    job_id = site.submit()
    site.ticks(2)
    job = site.job(job_id)
    assert job["state"] == "failed" and "Invalid account" in job["reason"]
    assert site.ledger() == (0, 0)
