"""Jobs end to end on the embedded default: broker, site agent, local executor, ledger."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Job, LedgerRow
from aifactory.domain.enums import LedgerKind
from aifactory.domain.ledger import usage_milli
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict]:  # type: ignore[type-arg]
    settings = settings.model_copy(update={"local_gpus_per_site": 4})
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, alloc = award(api, anna, operator, hours=100)
        runner = AgentRunner(settings, db)
        yield {
            "api": api,
            "anna": anna,
            "code": code,
            "alloc": alloc,
            "runner": runner,
            "db": db,
            "op": operator,
        }


def _job(api: TestClient, who: Person, job_id: int) -> dict:  # type: ignore[type-arg]
    return ok(api.get(f"{API}/jobs/{job_id}", headers=who.headers))  # type: ignore[no-any-return]


def test_job_runs_to_completion_with_logs_and_exact_charge(env: dict) -> None:  # type: ignore[type-arg]
    api, anna, runner = env["api"], env["anna"], env["runner"]
    body = spec(
        env["code"],
        [
            PY,
            "-c",
            "import os,time; print('gpus', os.environ['CUDA_VISIBLE_DEVICES']); time.sleep(0.5)",
        ],
        resources={"gpus_per_node": 2},
    )
    job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
    assert job["state"] == "placed" and job["factory"] == "LUMI AIF"
    assert float(job["reserved_gpu_hours"]) == pytest.approx(2 * 60 / 3600, abs=0.001)
    run_until(runner, lambda: _job(api, anna, job["id"])["state"] == "completed")
    done = _job(api, anna, job["id"])
    assert done["exit_code"] == 0
    assert [t["to_state"] for t in done["transitions"]][:3] == ["pending", "placed", "submitted"]
    (attempt,) = done["attempts"]
    assert attempt["elapsed_s"] >= 0.5
    expected = usage_milli(2, timedelta(seconds=attempt["elapsed_s"]), Decimal("1.0"))
    assert Decimal(done["charged_gpu_hours"]) * 1000 == expected
    logs = ok(api.get(f"{API}/jobs/{job['id']}/logs", headers=anna.headers))
    assert logs["text"].strip() == "gpus 0,1" and logs["finished"] is True
    alloc = ok(api.get(f"{API}/allocations/{env['alloc']}", headers=anna.headers))
    assert Decimal(alloc["used"]) * 1000 == expected and Decimal(alloc["reserved"]) == 0
    why = ok(api.get(f"{API}/jobs/{job['id']}/why", headers=anna.headers))
    assert why["chosen"] == "LUMI AIF/LUMI-AI/gpu" and why["policy"] == "broker"


def test_sum_of_charges_equals_sum_over_jobs(env: dict) -> None:  # type: ignore[type-arg]
    api, anna, runner, db = env["api"], env["anna"], env["runner"], env["db"]
    ids = [
        ok(
            api.post(
                f"{API}/jobs",
                headers=anna.headers,
                json=spec(
                    env["code"],
                    [PY, "-c", f"import time; time.sleep({0.2 * i})"],
                    resources={"gpus_per_node": 1 + i % 2},
                ),
            ),
            201,
        )["id"]
        for i in range(4)
    ]
    run_until(runner, lambda: all(_job(api, anna, i)["state"] == "completed" for i in ids))
    with db.session() as s:
        charges = -int(
            s.scalar(
                select(func.sum(LedgerRow.amount_milli)).where(LedgerRow.kind == LedgerKind.CHARGE)
            )
            or 0
        )
        jobs = s.scalars(select(Job)).all()
        expected = sum(
            usage_milli(j.gpus, timedelta(seconds=j.attempts[0].elapsed_s), Decimal("1.0"))
            for j in jobs
        )
    assert charges == expected > 0


def test_failure_timeout_and_cancel_are_recorded(env: dict) -> None:  # type: ignore[type-arg]
    api, anna, runner = env["api"], env["anna"], env["runner"]
    fail = ok(
        api.post(
            f"{API}/jobs",
            headers=anna.headers,
            json=spec(env["code"], [PY, "-c", "import sys; sys.exit(3)"]),
        ),
        201,
    )
    slow = ok(
        api.post(
            f"{API}/jobs",
            headers=anna.headers,
            json=spec(
                env["code"], [PY, "-c", "import time; time.sleep(30)"], resources={"time_limit": 2}
            ),
        ),
        201,
    )
    stop = ok(
        api.post(
            f"{API}/jobs",
            headers=anna.headers,
            json=spec(env["code"], [PY, "-c", "import time; time.sleep(30)"]),
        ),
        201,
    )
    run_until(runner, lambda: _job(api, anna, stop["id"])["state"] == "running")
    ok(api.post(f"{API}/jobs/{stop['id']}/cancel", headers=anna.headers))
    states = {"failed", "timed_out", "cancelled"}
    run_until(
        runner, lambda: {_job(api, anna, j["id"])["state"] for j in (fail, slow, stop)} == states
    )
    assert _job(api, anna, fail["id"])["exit_code"] == 3
    again = api.post(f"{API}/jobs/{stop['id']}/cancel", headers=anna.headers)
    assert again.status_code == 409
    alloc = ok(api.get(f"{API}/allocations/{env['alloc']}", headers=anna.headers))
    assert Decimal(alloc["reserved"]) == 0


def test_job_waits_for_capacity_then_runs(env: dict) -> None:  # type: ignore[type-arg]
    api, anna, runner = env["api"], env["anna"], env["runner"]
    big = ok(
        api.post(
            f"{API}/jobs",
            headers=anna.headers,
            json=spec(
                env["code"],
                [PY, "-c", "import time; time.sleep(1)"],
                resources={"gpus_per_node": 4},
            ),
        ),
        201,
    )
    second = ok(
        api.post(
            f"{API}/jobs",
            headers=anna.headers,
            json=spec(env["code"], [PY, "-c", "print('second')"], resources={"gpus_per_node": 2}),
        ),
        201,
    )
    assert second["state"] == "pending"
    why = ok(api.get(f"{API}/jobs/{second['id']}/why", headers=anna.headers))
    assert "has 0 of 4 GPUs free" in why["waiting"]
    run_until(runner, lambda: _job(api, anna, second["id"])["state"] == "completed")
    first = _job(api, anna, big["id"])
    assert first["state"] == "completed"
    assert _job(api, anna, second["id"])["started_at"] >= first["ended_at"]


def test_a_project_cannot_start_jobs_once_its_budget_is_spent(env: dict) -> None:  # type: ignore[type-arg]
    api, anna = env["api"], env["anna"]
    body = spec(
        env["code"], [PY, "-c", "pass"], resources={"gpus_per_node": 4, "time_limit": "30h"}
    )  # 120 GPU-h > 100
    response = api.post(f"{API}/jobs", headers=anna.headers, json=body)
    assert response.status_code == 409
    details = response.json()["error"]["details"]
    assert details == [
        {
            "field": "LUMI AIF/LUMI-AI/gpu",
            "rule": "placement",
            "message": "needs 120.0 GPU-hours of budget, 100.0 remain",
        }
    ]
    assert ok(api.get(f"{API}/jobs", headers=anna.headers))["jobs"] == []
