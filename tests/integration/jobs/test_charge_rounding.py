"""A short real job is charged GPUs x its recorded run time, rounded up (docs/jobs.md).

The expected charge is computed here from the attempt's own recorded start and end, with integer
arithmetic, independently of the product's helpers: ceil(GPUs x elapsed) GPU-seconds, times the
partition's charge factor, rounded up to the ledger's milli-GPU-hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import JobAttempt, LedgerRow, Partition
from aifactory.domain.enums import LedgerKind
from aifactory.services import ledger
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"
FACTOR = Fraction(7, 10)  # set on every partition, so placement cannot pick another factor


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict[str, Any]]:
    with db.session() as s:
        s.execute(update(Partition).values(charge_factor=float(FACTOR)))
    settings = settings.model_copy(update={"local_gpus_per_site": 4})
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, alloc = award(api, anna, operator, hours=100)
        yield {
            "api": api,
            "anna": anna,
            "code": code,
            "alloc": alloc,
            "runner": AgentRunner(settings, db),
            "db": db,
        }


def _expected_milli(gpus: int, start: datetime, end: datetime) -> int:
    """ceil(ceil(GPUs x (end - start) in seconds) x FACTOR x 1000 / 3600), in integers."""
    micros = (end - start) // timedelta(microseconds=1)
    gpu_seconds = -(-gpus * micros // 1_000_000)
    milli = Fraction(gpu_seconds) * FACTOR * 1000 / 3600
    return -(-milli.numerator // milli.denominator)


def _job(api: TestClient, who: Person, job_id: int) -> dict[str, Any]:
    return ok(api.get(f"{API}/jobs/{job_id}", headers=who.headers))  # type: ignore[no-any-return]


def test_short_jobs_are_charged_their_recorded_time_rounded_up(env: dict[str, Any]) -> None:
    api, anna, runner, db = env["api"], env["anna"], env["runner"], env["db"]
    # `true` on 1 GPU runs for milliseconds: rounding to the nearest GPU-second charged it 0.
    commands = {1: ["true"], 3: [PY, "-c", "import time; time.sleep(0.2)"]}
    ids = {
        gpus: ok(
            api.post(
                f"{API}/jobs",
                headers=anna.headers,
                json=spec(env["code"], argv, resources={"gpus_per_node": gpus}),
            ),
            201,
        )["id"]
        for gpus, argv in commands.items()
    }
    run_until(runner, lambda: all(_job(api, anna, i)["state"] == "completed" for i in ids.values()))

    total = 0
    for gpus, job_id in ids.items():
        view = _job(api, anna, job_id)
        (seen,) = view["attempts"]
        start = datetime.fromisoformat(seen["started_at"])
        end = datetime.fromisoformat(seen["ended_at"])
        with db.session() as s:
            (attempt,) = s.scalars(select(JobAttempt).where(JobAttempt.job_id == job_id)).all()
            charges = s.scalars(
                select(LedgerRow.amount_milli).where(
                    LedgerRow.job_id == job_id, LedgerRow.kind == LedgerKind.CHARGE
                )
            ).all()
        assert (attempt.started_at, attempt.ended_at) == (start, end)  # the view shows the rows
        assert timedelta(0) < end - start
        expected = _expected_milli(gpus, start, end)
        assert expected >= 1  # never free, however short
        assert list(charges) == [-expected]
        assert attempt.charged_milli == expected
        assert Decimal(view["charged_gpu_hours"]) * 1000 == expected
        assert Decimal(seen["charged_gpu_hours"]) * 1000 == expected
        total += expected

    alloc = ok(api.get(f"{API}/allocations/{env['alloc']}", headers=anna.headers))
    assert Decimal(alloc["used"]) * 1000 == total and Decimal(alloc["reserved"]) == 0
    with db.session() as s:
        assert ledger.audit(s) == []
