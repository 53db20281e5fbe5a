"""The ledger in the database: never overspent under concurrency, warnings, hard stop, expiry."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Event, LedgerRow, Organisation, Project, Proposal
from aifactory.domain.enums import LedgerKind
from aifactory.errors import AIFactoryError, QuotaExceeded
from aifactory.services import ledger
from aifactory.settings import Settings

H = 1000  # milli-GPU-hours per GPU-hour


def make_allocation(db: Database, hours: int, end: date = date(2027, 6, 30)) -> int:
    """A bare project + allocation with ``hours`` granted (what an award creates)."""
    with db.session() as s:
        n = int(s.scalar(select(func.count()).select_from(Project)) or 0) + 1
        org = s.scalar(select(Organisation.id)) or _org(s)
        p = Proposal(
            call_id="lumi-aif-pg",
            mode="PG",
            organisation_id=org,
            applicant_id=_user(s),
            title="t",
            research_kind="open_rd",
            status="accepted",
        )
        s.add(p)
        s.flush()
        code = f"EHPC-AIF-2026PG11-{n:04d}"
        s.add(Project(code=code, proposal_id=p.id, title="t", mode="PG", organisation_id=org))
        s.flush()
        a = Allocation(
            project_code=code,
            factory_id=1,
            partition_id=1,
            start_date=date(2026, 1, 1),
            end_date=end,
            eu_share=0.5,
            national_share=0.5,
            commercial_share=0,
        )
        s.add(a)
        s.flush()
        ledger.post(s, a.id, LedgerKind.GRANT, hours * H, "test")
        return a.id


def _org(s) -> int:  # type: ignore[no-untyped-def]
    org = Organisation(name="Ledger Oy", type="startup", country_code="FI", enterprise_links=[])
    s.add(org)
    s.flush()
    return org.id


def _user(s) -> int:  # type: ignore[no-untyped-def]
    from aifactory.db.models import User

    uid = s.scalar(select(User.id))
    if uid is None:
        u = User(username="ledgeruser", email="l@x.eu")
        s.add(u)
        s.flush()
        uid = u.id
    return int(uid)


def test_concurrent_reservations_never_overspend(db: Database, backend: str) -> None:
    alloc = make_allocation(db, hours=100)
    wins: list[int] = []
    refusals: list[str] = []
    barrier = threading.Barrier(16)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            try:
                with db.session() as s:
                    ledger.reserve(s, alloc, 3 * H, f"w{i}")
                wins.append(i)
            except QuotaExceeded as exc:
                refusals.append(exc.message)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 33  # 33 x 3 h fit in 100 h; the 34th does not
    assert len(refusals) == 16 * 5 - 33
    with db.session() as s:
        state = ledger.state(s, alloc)
        total = s.scalar(
            select(func.sum(LedgerRow.amount_milli)).where(LedgerRow.allocation_id == alloc)
        )
    assert state.remaining == 1 * H == total
    assert state.reserved == 99 * H
    with db.session() as s:
        assert ledger.recompute(s, alloc) == state  # running totals agree with the entries


def test_refusal_gives_the_numbers_and_stores_nothing(db: Database) -> None:
    alloc = make_allocation(db, hours=10)
    with pytest.raises(QuotaExceeded) as info, db.session() as s:
        ledger.reserve(s, alloc, 11 * H, "t")
    assert "11 GPU-h" in info.value.message and "remaining 10 GPU-h" in info.value.message
    with db.session() as s:
        assert len(ledger.entries(s, alloc)) == 1


def test_warning_at_80_percent_and_hard_stop_at_100(db: Database) -> None:
    alloc = make_allocation(db, hours=10)
    with db.session() as s:
        ledger.reserve(s, alloc, 8 * H, "t")
        ledger.settle(s, alloc, 8 * H, 8 * H, "t")
    with db.session() as s:
        kinds = s.scalars(select(Event.kind)).all()
        assert kinds == ["allocation_warning"]
        assert s.get_one(Allocation, alloc).usage_level == "warning"
        ledger.reserve(s, alloc, 2 * H, "t")
        _, uncharged = ledger.settle(s, alloc, 2 * H, 3 * H, "t")
    assert uncharged == 1 * H  # usage beyond the budget is reported, never overspent
    with db.session() as s:
        assert s.scalars(select(Event.kind).order_by(Event.id)).all() == [
            "allocation_warning",
            "allocation_exhausted",
        ]
    with pytest.raises(QuotaExceeded), db.session() as s:
        ledger.reserve(s, alloc, 1, "t")


def test_expiry_takes_what_remains_and_stops_new_work(db: Database) -> None:
    alloc = make_allocation(db, hours=10, end=date(2026, 11, 30))
    with db.session() as s:
        ledger.reserve(s, alloc, 2 * H, "t")
        assert ledger.expire_due(s, date(2026, 11, 30)) == []
        assert ledger.expire_due(s, date(2026, 12, 1)) == [alloc]
    with db.session() as s:
        state = ledger.state(s, alloc)
        assert (state.expired, state.reserved, state.remaining) == (8 * H, 2 * H, 0)
        ledger.settle(s, alloc, 2 * H, 1 * H, "t")  # the running job ends later
        state = ledger.state(s, alloc)
    assert (state.used, state.expired, state.remaining) == (1 * H, 9 * H, 0)
    with pytest.raises(QuotaExceeded, match="expired"), db.session() as s:
        ledger.reserve(s, alloc, 1, "t")


OPS = st.lists(
    st.tuples(st.sampled_from(["reserve", "settle", "adjust", "grant"]), st.integers(1, 40)),
    max_size=25,
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=OPS)
def test_stored_balance_is_the_sum_and_never_negative(tmp_path_factory, ops) -> None:  # type: ignore[no-untyped-def]
    from aifactory.services.setup import prepare
    from aifactory.settings import Settings

    db = prepare(Settings(data_dir=tmp_path_factory.mktemp("prop")))
    alloc = make_allocation(db, hours=50)
    open_jobs: list[int] = []
    for op, n in ops:
        try:
            with db.session() as s:
                if op == "reserve":
                    ledger.reserve(s, alloc, n * H, "p")
                    open_jobs.append(n * H)
                elif op == "settle" and open_jobs:
                    ledger.settle(s, alloc, open_jobs.pop(), n * H, "p")
                elif op == "adjust":
                    ledger.post(s, alloc, LedgerKind.ADJUST, -n * H, "p")
                else:
                    ledger.post(s, alloc, LedgerKind.GRANT, n * H, "p")
        except AIFactoryError:
            pass
        with db.session() as s:
            state = ledger.state(s, alloc)
            total = s.scalar(
                select(func.sum(LedgerRow.amount_milli)).where(LedgerRow.allocation_id == alloc)
            )
            assert state.remaining == total >= 0
            assert ledger.recompute(s, alloc) == state
            assert min(state.used, state.reserved, state.granted) >= 0
            assert state.used <= state.granted
    db.dispose()


def test_the_agent_runner_expires_ended_allocations_by_itself(
    db: Database, settings: Settings
) -> None:
    from aifactory.agents.runner import AgentRunner

    alloc = make_allocation(db, hours=10, end=date(2020, 1, 31))
    AgentRunner(settings, db).tick()
    with db.session() as s:
        assert s.get_one(Allocation, alloc).status == "expired"
        assert ledger.state(s, alloc).remaining == 0
        assert [e.kind for e in ledger.entries(s, alloc)] == ["grant", "expire"]
