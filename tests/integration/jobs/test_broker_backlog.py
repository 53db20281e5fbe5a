"""The broker's backlog: EASY backfilling behind blocked large jobs (the simulator's rule), and a
cost that does not grow with the backlog when nothing changes.

Only the broker runs here (no site agent), so placed jobs keep their GPUs: the tests look at
placement decisions through the API a user calls, and at the SQL each pass sends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from aifactory.agents.runner import AgentRunner, Broker
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Job, SiteQueue, User
from aifactory.domain.jobs import JobState
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, spec
from aifactory.testing.people import Person

API = "/api/v1"
HOUR = 3600


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict[str, Any]]:
    # A long lease: a busy machine must not make a pass "first sight" by a lease taken afresh.
    settings = settings.model_copy(update={"local_gpus_per_site": 8, "lease_ttl_s": 600.0})
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator, hours=5000)
        runner = AgentRunner(settings, db)
        assert runner.broker is not None
        yield {"api": api, "anna": anna, "code": code, "broker": runner.broker, "db": db}


def _submit(env: dict[str, Any], gpus: int, limit_s: int) -> dict[str, Any]:
    body = spec(
        env["code"], [PY, "-c", "pass"], resources={"gpus_per_node": gpus, "time_limit": limit_s}
    )
    return ok(env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=body), 201)


def _pass(broker: Broker, woken: bool = True) -> int:
    assert broker.lease.ensure_due()
    return broker.tick(woken)


def _state(env: dict[str, Any], job_id: int) -> str:
    return ok(env["api"].get(f"{API}/jobs/{job_id}", headers=env["anna"].headers))["state"]


def _why(env: dict[str, Any], job_id: int) -> dict[str, Any]:
    return ok(env["api"].get(f"{API}/jobs/{job_id}/why", headers=env["anna"].headers))


def test_a_small_job_starts_ahead_of_a_large_one_only_if_it_cannot_delay_it(
    env: dict[str, Any],
) -> None:
    running = _submit(env, 6, HOUR)  # holds 6 of the 8 GPUs for up to an hour
    assert running["state"] == "placed"
    big = _submit(env, 8, HOUR)  # needs the whole pool: next in line once the hour is over
    assert big["state"] == "pending"
    _pass(env["broker"])
    why = _why(env, big["id"])
    assert why["waiting"].startswith("next in line for 8 GPUs at ")
    assert "has 2 of 8 GPUs free" in why["waiting"]
    (start,) = why["est_start_s"].values()  # promised by the running job's time limit
    assert HOUR - 120 < start <= HOUR

    long = _submit(env, 2, 2 * HOUR)  # fits the 2 free GPUs but would still run at the hour
    short = _submit(env, 2, HOUR // 2)  # fits and ends before the large job's turn
    assert (long["state"], short["state"]) == ("pending", "placed")
    _pass(env["broker"])
    assert _state(env, long["id"]) == "pending"
    assert f"behind job {big['id']}" in _why(env, long["id"])["waiting"]
    assert _state(env, big["id"]) == "pending"


def test_the_broker_backfills_into_the_gpus_the_next_job_does_not_need(
    env: dict[str, Any],
) -> None:
    _submit(env, 4, HOUR)  # 4 of 8 busy for an hour
    big = _submit(env, 6, HOUR)  # at the hour 8 are free: it needs 6, so 2 are spare
    _pass(env["broker"])
    spare = _submit(env, 2, 3 * HOUR)  # runs past the hour, on the 2 spare GPUs: the broker's
    too_wide = _submit(env, 3, 3 * HOUR)  # would take one the large job needs
    assert spare["state"] == too_wide["state"] == "pending"  # a submission never takes spares
    _pass(env["broker"])
    assert _state(env, spare["id"]) == "placed"
    assert _state(env, too_wide["id"]) == "pending"
    assert _state(env, big["id"]) == "pending"


def test_a_job_that_fits_is_placed_whatever_the_backlog_ahead_of_it(
    env: dict[str, Any],
) -> None:
    _submit(env, 4, HOUR)
    with env["db"].session() as s:  # 1,000 older jobs that need all 8 GPUs
        owner = s.scalar(select(User.id).where(User.username == "anna"))
        body = spec(env["code"], [PY, "-c", "pass"], resources={"gpus_per_node": 8})
        s.add_all(
            Job(
                name=f"big-{n}",
                project_code=env["code"],
                owner_id=owner,
                spec=body,
                state=JobState.PENDING,
                gpus=8,
                time_limit_s=60,
            )
            for n in range(1000)
        )
    _pass(env["broker"])
    small = _submit(env, 1, 30)  # ends before the first large job's turn
    assert small["state"] == "placed"
    with env["db"].session() as s:
        (queue,) = s.scalars(select(SiteQueue)).all()
        first = s.scalar(select(Job.id).where(Job.name == "big-0"))
    assert queue.job_id == first  # the oldest large job, not any later one, holds the turn


def test_an_idle_pass_reads_a_few_rows_whatever_the_backlog(env: dict[str, Any]) -> None:
    """Nothing changed: no writes, and the same few statements for 50 or 1,000 waiting jobs;
    a woken pass also sends the same number of statements for either backlog."""
    _submit(env, 8, HOUR)
    counts = []
    for backlog in (50, 1000):
        while len(_pending(env)) < backlog:
            _submit(env, 8, HOUR)
        _pass(env["broker"])  # first sight of the new jobs: notes their reasons
        with _statements(env["db"]) as idle:
            assert _pass(env["broker"], woken=False) == 0
        with _statements(env["db"]) as woken:
            assert _pass(env["broker"], woken=True) == 0
        writes = [q for q in idle + woken if q.split()[0] in ("INSERT", "UPDATE", "DELETE")]
        assert not writes, (backlog, writes)
        counts.append((len(idle), len(woken)))
    assert counts[0] == counts[1], (counts, idle, woken)
    assert counts[0][0] <= 8, counts


def _pending(env: dict[str, Any]) -> list[int]:
    with env["db"].session() as s:
        return list(s.scalars(select(Job.id).where(Job.state == JobState.PENDING)))


class _statements:
    """The SQL statements sent while the block runs (lease renewals excluded)."""

    def __init__(self, db: Database) -> None:
        self.engine, self.seen = db.engine, []

    def _on(self, *args: Any) -> None:
        sql = str(args[2]).strip()
        if "leases" not in sql:
            self.seen.append(sql)

    def __enter__(self) -> list[str]:
        event.listen(self.engine, "before_cursor_execute", self._on)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on)
