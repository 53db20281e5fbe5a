"""A crash between handing a job to the executor and recording it neither loses nor repeats it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.errors import Invalid
from aifactory.executors import ExecJob, Executor
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"


class Crash(BaseException):
    """Stands for the process dying (BaseException: nothing in the agent catches it)."""


class CrashAfterSubmit:
    """Wraps a real executor: submits for real, then 'dies' before the agent can record."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, job: ExecJob) -> str:
        self.inner.submit(job)
        raise Crash

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_restart_after_crash_runs_the_job_exactly_once(
    db: Database, settings: Settings, operator: Person
) -> None:
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        # Each run appends a line to the attempt's log (the job cannot write the test's files).
        script = "import time; print('run', flush=True); time.sleep(0.5)"
        job = ok(
            api.post(f"{API}/jobs", headers=anna.headers, json=spec(code, [PY, "-c", script])), 201
        )
        first = AgentRunner(settings, db)
        lumi = next(a for a in first.agents if a.name == "LUMI AIF")
        lumi.executor = CrashAfterSubmit(lumi.executor)  # type: ignore[assignment]
        with pytest.raises(Crash):
            first.tick()
        assert ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))["state"] == "placed"
        restarted = AgentRunner(settings, db)  # a new process: fresh executor objects, same disk
        run_until(
            restarted,
            lambda: (
                ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))["state"] == "completed"
            ),
        )
        done = ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))
        log = ok(api.get(f"{API}/jobs/{job['id']}/logs", headers=anna.headers))["text"]
    assert log == "run\n"
    assert len(done["attempts"]) == 1 and done["exit_code"] == 0


class Refusing:
    """Wraps a real executor whose scheduler refuses every submission (as sbatch can)."""

    def __init__(self, inner: Executor) -> None:
        self.inner = inner

    def submit(self, job: ExecJob) -> str:
        raise Invalid.field("partition", "slurm", "sbatch: error: invalid partition specified")

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_a_refused_submission_fails_the_job_with_the_reason_and_frees_its_budget(
    db: Database, settings: Settings, operator: Person
) -> None:
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, alloc = award(api, anna, operator)
        job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=spec(code, ["true"])), 201)
        runner = AgentRunner(settings, db)
        lumi = next(a for a in runner.agents if a.name == "LUMI AIF")
        lumi.executor = Refusing(lumi.executor)  # type: ignore[assignment]
        runner.tick()
        done = ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))
        balance = ok(api.get(f"{API}/allocations/{alloc}", headers=anna.headers))
    assert done["state"] == "failed"
    assert "invalid partition specified" in done["reason"]
    assert float(balance["reserved"]) == 0 and float(balance["used"]) == 0
