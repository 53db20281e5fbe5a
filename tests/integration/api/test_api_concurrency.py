"""A burst of concurrent requests is served, never stalled on the connection pool or 500.

Waits are bounded: for a slot among the requests in progress, for a pooled connection, for
SQLite's write lock. A request that cannot get one is answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from aifactory.api.app import create_app
from aifactory.api.limits import ConcurrencyLimit
from aifactory.db.engine import Database
from aifactory.db.models import ApiToken, Event
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.people import Person

CALLERS = 120  # far more than the pool's 40 connections and anyio's 40 threads


def test_a_burst_of_requests_beyond_the_pool_size_is_served(
    db: Database, settings: Settings, applicant: Person
) -> None:
    # Every request waits for its slot however long the burst takes on a slow machine: this
    # is about stalls (threads against pooled connections), not about turning work away.
    patient = settings.model_copy(update={"api_queue_timeout_s": 600.0})
    with BackgroundServer(patient, db) as server:

        def call(_: int) -> int:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                return http.get("/api/v1/jobs", headers=applicant.headers).status_code

        with ThreadPoolExecutor(max_workers=CALLERS) as pool:
            codes = list(pool.map(call, range(CALLERS)))
    assert codes == [200] * CALLERS


# --- bounded waits: a slot, a pooled connection, SQLite's write lock; else 503 + Retry-After ---


def _assert_overloaded(response: httpx.Response, code: str = "overloaded") -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"].isdigit(), response.headers
    body = response.json()["error"]
    assert body["code"] == code and body["message"] and body["details"] == [], body


class Held:
    """An ASGI app whose requests stay in progress until ``release`` is set."""

    def __init__(self) -> None:
        self.entered, self.release = asyncio.Event(), asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.entered.set()
        await self.release.wait()
        await PlainTextResponse("done")(scope, receive, send)


def test_a_request_that_waits_too_long_for_a_slot_gets_503_with_retry_after() -> None:
    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        app = Held()
        limited = ConcurrencyLimit(app, limit=1, queue_timeout_s=0.05)
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://aif") as http:
            first = asyncio.create_task(http.get("/"))
            await app.entered.wait()
            refused = await http.get("/")  # waits its 0.05 s for the one slot, in vain
            app.release.set()
            return await first, refused

    served, refused = asyncio.run(scenario())
    assert served.status_code == 200
    _assert_overloaded(refused)


def test_a_request_that_finds_the_queue_full_gets_503_and_the_queued_ones_are_served() -> None:
    async def scenario() -> list[httpx.Response]:
        app = Held()
        limited = ConcurrencyLimit(app, limit=1, queue_timeout_s=600, queue_limit=1)
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://aif") as http:
            first = asyncio.create_task(http.get("/"))
            await app.entered.wait()
            queued = asyncio.create_task(http.get("/"))
            while limited.waiting < 1:  # until the second request waits for the slot
                await asyncio.sleep(0.01)
            refused = await http.get("/")
            app.release.set()
            return [await first, await queued, refused]

    first, queued, refused = asyncio.run(scenario())
    assert (first.status_code, queued.status_code) == (200, 200)
    _assert_overloaded(refused)


def test_no_free_database_connection_gets_503_with_retry_after(
    db: Database, settings: Settings, applicant: Person
) -> None:
    tight = Database(db.url, pool_size=1, max_overflow=0, pool_timeout_s=0.1)
    try:
        app = create_app(settings, tight)
        with tight.engine.connect(), TestClient(app, raise_server_exceptions=False) as api:
            response = api.get("/api/v1/jobs", headers=applicant.headers)
    finally:
        tight.dispose()
    _assert_overloaded(response)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_write_lock_held_elsewhere_gets_503_and_stores_nothing(
    db: Database, settings: Settings, applicant: Person
) -> None:
    impatient = Database(db.url, busy_timeout_s=0.1)
    path = make_url(db.url).database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's long write transaction
        app = create_app(settings, impatient)
        with TestClient(app, raise_server_exceptions=False) as api:
            response = api.post("/api/v1/tokens", json={"name": "x"}, headers=applicant.headers)
    finally:
        other.rollback()
        other.close()
        impatient.dispose()
    _assert_overloaded(response, "backend_unavailable")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ApiToken)) == 1  # applicant's own


def test_a_transaction_writes_after_reading_although_another_committed_meanwhile(
    db: Database,
) -> None:
    """SQLite: a deferred transaction that had read could not upgrade to write (SQLITE_BUSY at
    once); this one takes the write lock first, at its first write, and a session nested in it
    (an audit record in a transaction of its own) does not wait on it."""
    with db.session() as reader:
        seen = reader.scalar(select(func.count()).select_from(Event))
        with db.session() as other:
            other.add(Event(kind="test", subject="other", message="committed meanwhile"))
        reader.add(Event(kind="test", subject="reader", message=f"after seeing {seen}"))
    with db.session() as s:
        assert s.scalars(select(Event.subject).where(Event.kind == "test")).all() == [
            "other",
            "reader",
        ]


def test_a_savepoint_that_begins_a_transaction_is_rolled_back_with_it(db: Database) -> None:
    with pytest.raises(RuntimeError), db.session() as s:
        with s.begin_nested():
            s.add(Event(kind="test", subject="savepoint", message="released, then rolled back"))
        raise RuntimeError("the request failed after its savepoint")
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "test")) == 0
