"""Controllers hold under concurrency and bad jobs: leases, compare-and-set, idempotent ledger,
per-job isolation, pending jobs that can never run, and wake-ups instead of tight polling."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from aifactory.agents.leases import LeaseHandle, LeaseLost
from aifactory.agents.planner import fair_order
from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Job, Lease, LedgerRow, User
from aifactory.db.types import utcnow
from aifactory.domain.enums import LedgerKind
from aifactory.domain.jobs import JobState
from aifactory.services import ledger
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict]:  # type: ignore[type-arg]
    settings = settings.model_copy(update={"local_gpus_per_site": 8, "lease_ttl_s": 2.0})
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, alloc = award(api, anna, operator, hours=500)
        yield {"api": api, "anna": anna, "code": code, "alloc": alloc, "settings": settings}


def _states(db: Database, ids: list[int]) -> dict[int, str]:
    with db.session() as s:
        return dict(s.execute(select(Job.id, Job.state).where(Job.id.in_(ids))).all())  # type: ignore[arg-type]


def _submit(api: TestClient, who: Person, code: str, n: int, command: list[str]) -> list[int]:
    return [
        ok(api.post(f"{API}/jobs", headers=who.headers, json=spec(code, command)), 201)["id"]
        for _ in range(n)
    ]


def test_a_lease_has_one_holder_and_moves_only_when_it_expires(db: Database) -> None:
    first = LeaseHandle(db, "site:test", "one", ttl_s=60)
    second = LeaseHandle(db, "site:test", "two", ttl_s=60)
    assert first.ensure() and not second.ensure()
    assert first.ensure()  # renewing keeps the token
    assert first.token == 1
    with db.session() as s:  # the holder dies: its lease runs out
        s.execute(
            update(Lease)
            .where(Lease.name == "site:test")
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert second.ensure() and second.token == 2
    with pytest.raises(LeaseLost), db.session() as s:
        first.fence(s)  # the old holder's next transaction is refused
    assert not first.ensure()
    second.release()
    assert first.ensure() and first.token == 3


def test_a_stale_job_write_is_refused_and_rolls_back_its_ledger_effects(
    db: Database,
    env: dict,  # type: ignore[type-arg]
) -> None:
    api, anna, code = env["api"], env["anna"], env["code"]
    job_id, _ = _submit(api, anna, code, 2, [PY, "-c", "pass"])  # the other one holds hours too
    before = _books(db, env["alloc"])
    slow = db.sessions()  # a second controller reads the job before the first one settles it
    stale = slow.get_one(Job, job_id)
    held = stale.reserved_milli
    slow.commit()
    with db.session() as s:
        job = s.get_one(Job, job_id)
        ledger.settle(s, job.allocation_id or 0, job.reserved_milli, 0, "one", (job.id, 1))
        job.reserved_milli, job.state = 0, JobState.CANCELLED
    ledger.settle(slow, stale.allocation_id or 0, held, 0, "two", (job_id, 2))
    stale.reserved_milli, stale.state = 0, JobState.CANCELLED
    with pytest.raises(StaleDataError):
        slow.commit()  # UPDATE jobs ... WHERE version = <what it read>: no row, all rolled back
    slow.rollback()
    slow.close()
    after = _books(db, env["alloc"])
    assert held > 0 and after.reserved == before.reserved - held  # released once only
    with db.session() as s:
        assert ledger.audit(s) == []


def test_a_ledger_effect_happens_at_most_once_per_job_attempt(
    db: Database,
    env: dict,  # type: ignore[type-arg]
) -> None:
    alloc = env["alloc"]
    with db.session() as s:  # another job's hold, so only the constraint can stop a repeat
        ledger.reserve(s, alloc, 9000, "broker", (4243, 1))
        ledger.reserve(s, alloc, 5000, "broker", (4242, 1))
    with pytest.raises(IntegrityError), db.session() as s:
        ledger.reserve(s, alloc, 5000, "broker", (4242, 1))
    with db.session() as s:
        ledger.settle(s, alloc, 5000, 1000, "agent", (4242, 1))
    with pytest.raises(IntegrityError), db.session() as s:
        ledger.settle(s, alloc, 5000, 1000, "agent", (4242, 1))
    with db.session() as s:
        ledger.settle(s, alloc, 9000, 0, "agent", (4243, 1))
        kinds = s.scalars(select(LedgerRow.kind).where(LedgerRow.job_id == 4242)).all()
        assert sorted(kinds) == [LedgerKind.CHARGE, LedgerKind.RELEASE, LedgerKind.RESERVE]
        assert ledger.audit(s) == []  # no job holds hours for 4242: reserved is back to 0


def test_the_audit_sees_reserved_hours_that_no_job_holds(
    db: Database,
    env: dict,  # type: ignore[type-arg]
) -> None:
    with db.session() as s:
        assert ledger.audit(s) == []
        s.execute(
            update(Allocation)
            .where(Allocation.id == env["alloc"])
            .values(reserved_milli=Allocation.reserved_milli + 7000)
        )
    with db.session() as s:
        problems = ledger.audit(s)
    assert any("reserved 7 GPU-h but its jobs hold 0 GPU-h" in p for p in problems), problems
    assert any("differ from its entries" in p for p in problems), problems


def test_a_job_that_cannot_be_handed_over_fails_and_its_site_goes_on(
    db: Database,
    env: dict,  # type: ignore[type-arg]
) -> None:
    api, anna, code = env["api"], env["anna"], env["code"]
    ids = _submit(api, anna, code, 21, [PY, "-c", "pass"])
    bad = ids[5]
    with db.session() as s:  # a spec stored before today's validation, or edited by hand
        job = s.get_one(Job, bad)
        job.spec = {**job.spec, "command": "echo 'x"}
    runner = AgentRunner(env["settings"], db)
    good = [i for i in ids if i != bad]
    run_until(runner, lambda: all(st == "completed" for st in _states(db, good).values()))
    run_until(runner, lambda: _states(db, [bad])[bad] == "failed")
    body = ok(api.get(f"{API}/jobs/{bad}", headers=anna.headers))
    assert "cannot be run as given" in body["reason"] and "quotation" in body["reason"]
    assert float(body["reserved_gpu_hours"]) == 0
    with db.session() as s:
        assert ledger.audit(s) == []
        assert s.get_one(Allocation, env["alloc"]).reserved_milli == 0


def test_pending_jobs_of_an_expired_allocation_fail_and_block_no_one(
    db: Database,
    env: dict,
    operator: Person,  # type: ignore[type-arg]
) -> None:
    api, anna = env["api"], env["anna"]
    ben = member_of(db, "ben", "Baltic Bytes OU", country="EE")
    other, _ = award(api, ben, operator, organisation="Baltic Bytes OU", hours=100)
    with db.session() as s:  # 300 jobs queued while the allocation was live
        owner = s.scalar(select(User.id).where(User.username == "anna"))
        for n in range(300):
            s.add(
                Job(
                    name=f"old-{n}",
                    project_code=env["code"],
                    owner_id=owner,
                    spec=spec(env["code"], [PY, "-c", "pass"]),
                    state=JobState.PENDING,
                    gpus=1,
                    time_limit_s=60,
                )
            )
        s.execute(
            update(Allocation)
            .where(Allocation.id == env["alloc"])
            .values(end_date=utcnow().date() - timedelta(days=1))
        )
    (good,) = _submit(api, ben, other, 1, [PY, "-c", "pass"])
    runner = AgentRunner(env["settings"], db)
    run_until(runner, lambda: _states(db, [good])[good] == "completed")
    with db.session() as s:
        old = s.scalars(select(Job).where(Job.project_code == env["code"])).all()
    assert len(old) == 300 and {j.state for j in old} == {"failed"}
    assert all("can never run as asked" in j.reason for j in old)
    assert all("no active allocation" in j.reason for j in old)
    why = ok(api.get(f"{API}/jobs/{old[0].id}/why", headers=anna.headers))
    assert "no active allocation" in why["rejected"]["(none)"]


def test_fair_order_takes_one_job_of_each_project_in_turn() -> None:
    rows = [(1, "A"), (2, "A"), (3, "B"), (4, "A"), (5, "C"), (6, "B")]
    assert fair_order(rows) == [1, 3, 5, 2, 6, 4]


def test_a_submission_wakes_its_site_without_waiting_for_the_safety_net(
    db: Database,
    env: dict,  # type: ignore[type-arg]
) -> None:
    """With the safety-net pass ten minutes apart, only a wake-up can hand a job over."""
    settings = env["settings"].model_copy(update={"controller_resync_s": 600.0})
    runner = AgentRunner(settings, db)
    runner.tick()  # take the leases now, so the loops start idle
    runner.start()
    try:
        api, anna, code = env["api"], env["anna"], env["code"]
        (job_id,) = _submit(api, anna, code, 1, [PY, "-c", "pass"])
        done = threading.Event()

        def watch() -> None:
            while _states(db, [job_id])[job_id] != "completed":
                done.wait(0.05)
            done.set()

        threading.Thread(target=watch, daemon=True).start()
        assert done.wait(240), _states(db, [job_id])  # far below the 600 s safety net
    finally:
        runner.stop()


def _books(db: Database, alloc: int) -> ledger.rules.LedgerState:
    with db.session() as s:
        return ledger.state(s, alloc)
