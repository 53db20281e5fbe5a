"""Failover between factories (local executors): a draining site's queued jobs move to another
entitled site; a site that stops answering past the grace loses its running managed job, which
resumes at the other site from the checkpoint replicated off the first."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.agents.runner import AgentRunner
from aifactory.agents.site_agent import SiteAgent
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import (
    CheckpointCopy,
    SiteOutage,
    StaleAttempt,
)
from aifactory.errors import BackendUnavailable
from aifactory.executors import ExecJob, ExecState, ExecStatus, ExecUsage, Executor
from aifactory.settings import Settings
from aifactory.testing.access import award, entitle, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"
HOME, OTHER = "LUMI AIF", "MIMER"
# A training stand-in: saves its step atomically (a temporary name, then a rename) and says so.
# The first attempt is slow, so it still runs when its site comes back (and is cancelled there).
COUNTER = """
import os, pathlib, time
ckpt = pathlib.Path(os.environ["AIF_CHECKPOINT_DIR"]); ckpt.mkdir(parents=True, exist_ok=True)
state = ckpt / "step"
step = int(state.read_text()) if state.exists() else 0
attempt = int(os.environ["AIF_ATTEMPT"])
print(f"attempt {attempt} resumes at step {step}", flush=True)
while step < 40:
    time.sleep(0.5 if attempt == 1 else 0.1); step += 1
    tmp = ckpt / ".step.tmp"; tmp.write_text(str(step)); os.replace(tmp, state)
    print(f"checkpoint step={step}", flush=True)
print("done at step", step, flush=True)
"""


@pytest.fixture
def two_sites(settings: Settings, tmp_path: Path) -> Settings:
    """LUMI AIF's scheduler runs one job at a time (the broker may place eight): the second
    waits queued in it. Failover after two seconds."""
    sites = tmp_path / "sites.yaml"
    site = {"factory": HOME, "executor": "local", "capacity_gpus": 8, "options": {"gpus": 1}}
    sites.write_text(yaml.safe_dump({"sites": [site]}))
    return settings.model_copy(update={"sites_file": sites, "failover_grace_s": 2.0})


def _agent(runner: AgentRunner, name: str) -> SiteAgent:
    return next(a for a in runner.agents if a.name == name)


def _quick(runner: AgentRunner) -> AgentRunner:
    for agent in runner.agents:
        agent.failover.check_s = 0.0
        agent.failover.checkpoint_poll_s = 0.2
    return runner


class Dark(Executor):
    """A site whose scheduler does not answer (its jobs go on running out of reach)."""

    def __init__(self, real: Executor) -> None:
        self.real = real

    def submit(self, spec: ExecJob) -> str:
        raise BackendUnavailable("no route to the scheduler")

    def poll(self, backend_ids: Iterable[str]) -> dict[str, ExecStatus]:
        raise BackendUnavailable("no route to the scheduler")

    def cancel(self, backend_id: str) -> None:
        raise BackendUnavailable("no route to the scheduler")

    def usage(self, backend_id: str) -> ExecUsage | None:
        raise BackendUnavailable("no route to the scheduler")


@pytest.fixture
def api(db: Database, two_sites: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(two_sites, db)) as client:
        yield client


def _project(api: TestClient, db: Database, operator: Person) -> tuple[Person, str, int]:
    """A project awarded at LUMI AIF (entitled at MIMER later, once its jobs are there)."""
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    code, allocation = award(api, anna, operator)
    return anna, code, allocation


def test_draining_a_site_moves_its_queued_job_to_another_entitled_site(
    db: Database, two_sites: Settings, api: TestClient, operator: Person
) -> None:
    anna, code, allocation = _project(api, db, operator)
    sleeper = [PY, "-c", "import time; time.sleep(5)"]
    ids = [
        ok(api.post(f"{API}/jobs", headers=anna.headers, json=spec(code, sleeper)), 201)["id"]
        for _ in range(2)
    ]
    runner = _quick(AgentRunner(two_sites, db))
    get = lambda i: ok(api.get(f"{API}/jobs/{i}", headers=anna.headers))  # noqa: E731
    # Both go to LUMI AIF; its scheduler runs one and queues the other.
    run_until(runner, lambda: sorted(get(i)["state"] for i in ids) == ["queued", "running"])
    assert {get(i)["factory"] for i in ids} == {HOME}
    queued = next(i for i in ids if get(i)["state"] == "queued")
    running = next(i for i in ids if i != queued)

    entitle(db, allocation, OTHER)
    # The operator drains LUMI AIF (what `aif factories set-status "LUMI AIF" draining` sends).
    path = f"{API}/factories/{HOME}/status"
    ok(api.post(path, headers=operator.headers, json={"status": "draining"}))
    run_until(runner, lambda: all(get(i)["state"] == "completed" for i in ids))

    moved, stayed = get(queued), get(running)
    assert [(a["factory"], a["state"]) for a in moved["attempts"]] == [
        (HOME, "preempted"),
        (OTHER, "completed"),
    ], moved["attempts"]
    assert "draining" in moved["attempts"][0]["message"]
    assert float(moved["attempts"][0]["charged_gpu_hours"]) == 0.0  # it never ran there
    # The running one finished where it was: a draining site's running jobs are not moved.
    assert [(a["factory"], a["state"]) for a in stayed["attempts"]] == [(HOME, "completed")]
    with db.session() as s:
        stale = s.scalars(select(StaleAttempt).where(StaleAttempt.job_id == queued)).one()
    assert stale.cancelled_at is not None  # cancelled at LUMI before it moved


# On SQLite only: the moves are the same compare-and-sets as the drain's (run on both above).
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_site_dark_past_the_grace_moves_its_running_managed_job_which_resumes_elsewhere(
    db: Database, two_sites: Settings, api: TestClient, operator: Person
) -> None:
    anna, code, allocation = _project(api, db, operator)
    body = spec(
        code,
        [PY, "-c", COUNTER],
        checkpoint_dir="ckpt",
        retry={"max_attempts": 3, "on": ["node_failed"]},
    )
    job_id = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)["id"]
    runner = _quick(AgentRunner(two_sites, db))
    get = lambda: ok(api.get(f"{API}/jobs/{job_id}", headers=anna.headers))  # noqa: E731

    def copied() -> CheckpointCopy | None:
        with db.session() as s:
            row = s.get(CheckpointCopy, job_id)
            if row is not None:
                s.expunge(row)
            return row

    # It runs at LUMI AIF and its checkpoints are copied to the control plane as they come.
    run_until(runner, lambda: (c := copied()) is not None and (c.step or 0) >= 3)
    first = copied()
    assert first is not None and get()["factory"] == HOME
    store = two_sites.data_dir / "checkpoints" / str(job_id) / f"v{first.version}"
    assert int((store / "step").read_text()) >= 3
    assert not list(store.glob(".*"))  # the file being written is never copied

    entitle(db, allocation, OTHER)
    home = _agent(runner, HOME)
    real = home.executor
    home.executor = Dark(real)
    last = copied()  # the last copy taken at LUMI AIF: nothing more comes from a dark site
    assert last is not None and last.attempt == 1 and (last.step or 0) >= 3
    replicated = two_sites.data_dir / "checkpoints" / str(job_id) / f"v{last.version}"
    replicated_step = int((replicated / "step").read_text())
    run_until(runner, lambda: get()["attempt"] == 2 and get()["state"] in ("running", "completed"))
    with db.session() as s:
        assert s.get(SiteOutage, home.factory_id) is not None  # noted at the first failed look
    # LUMI AIF answers again: the attempt that moved away is cancelled there, never left running.
    first_backend = get()["attempts"][0]["backend_id"]
    assert real.poll([first_backend])[first_backend].state == ExecState.RUNNING  # out of reach
    home.executor = real
    home._retry_at = 0.0  # its back-off is not what this test waits for

    def cancelled_there() -> bool:
        with db.session() as s:
            row = s.scalars(select(StaleAttempt).where(StaleAttempt.job_id == job_id)).one()
        return row.cancelled_at is not None

    run_until(runner, cancelled_there)
    run_until(runner, lambda: real.poll([first_backend])[first_backend].state.terminal)
    assert real.poll([first_backend])[first_backend].state == ExecState.CANCELLED

    run_until(runner, lambda: get()["state"] == "completed")
    done = get()
    logs = [
        ok(api.get(f"{API}/jobs/{job_id}/logs?attempt={n}", headers=anna.headers))["text"]
        for n in (1, 2)
    ]
    attempts = [(a["factory"], a["state"]) for a in done["attempts"]]
    assert attempts == [(HOME, "node_failed"), (OTHER, "completed")], attempts
    assert "has not answered" in done["attempts"][0]["message"]
    resumed = int(logs[1].split("resumes at step ")[1].split()[0])
    # It resumed from the copy (the step the log named for it, or a later save of the same
    # files): not from 0, and not from what the dark site wrote after the last copy.
    assert resumed == replicated_step >= (last.step or 0) >= 3
    assert "done at step 40" in logs[1]
    # Ended: the store gives the copy's space back (the site keeps its own directory).
    run_until(runner, lambda: copied() is None)
    assert not (two_sites.data_dir / "checkpoints" / str(job_id)).exists()
    with db.session() as s:
        assert s.get(SiteOutage, home.factory_id) is None
