"""Wake-ups raised inside a SAVEPOINT are sent when the transaction commits, not before.

SQLAlchemy calls ``after_commit`` when a SAVEPOINT is released and ``after_rollback`` when one
rolls back. Sent at the release, a wake-up made a controller look before the rows were there
(it found nothing and slept until its safety-net pass: 5 s per endpoint replica); cleared at a
SAVEPOINT's rollback, the outer transaction's wake-ups were lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from aifactory.db.engine import Database
from aifactory.db.wake import wake


@pytest.fixture
def sent(tmp_path: Path) -> tuple[Database, list[list[str]]]:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    published: list[list[str]] = []
    db.bus.publish = lambda topics: published.append(sorted(topics))  # type: ignore[method-assign]
    return db, published


def test_a_savepoint_s_wake_up_waits_for_the_commit(sent: tuple[Database, list[list[str]]]) -> None:
    db, published = sent
    with db.session() as s:
        s.execute(text("select 1"))
        with s.begin_nested():
            wake(s, "site:1")
        assert published == []  # released, not committed: nothing is sent yet
    assert published == [["site:1"]]


def test_a_savepoint_rolled_back_keeps_the_outer_wake_ups(
    sent: tuple[Database, list[list[str]]],
) -> None:
    db, published = sent
    with db.session() as s:
        wake(s, "broker")
        with pytest.raises(ValueError), s.begin_nested():
            raise ValueError
    assert published == [["broker"]]


def test_a_rolled_back_transaction_sends_nothing(sent: tuple[Database, list[list[str]]]) -> None:
    db, published = sent
    with pytest.raises(ValueError), db.session() as s:
        wake(s, "broker")
        raise ValueError
    with db.session() as s:
        s.execute(text("select 1"))
    assert published == []
