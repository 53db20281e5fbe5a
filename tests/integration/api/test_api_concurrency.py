"""A burst of concurrent requests is served, never stalled on the connection pool or 500."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from aifactory.db.engine import Database
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.people import Person

CALLERS = 120  # far more than the pool's 40 connections and anyio's 40 threads


def test_a_burst_of_requests_beyond_the_pool_size_is_served(
    db: Database, settings: Settings, applicant: Person
) -> None:
    with BackgroundServer(settings, db) as server:

        def call(_: int) -> int:
            with httpx.Client(base_url=server.url, timeout=120) as http:
                return http.get("/api/v1/jobs", headers=applicant.headers).status_code

        with ThreadPoolExecutor(max_workers=CALLERS) as pool:
            codes = list(pool.map(call, range(CALLERS)))
    assert codes == [200] * CALLERS
