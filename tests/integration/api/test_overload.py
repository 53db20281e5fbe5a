"""Overload: 200 job submissions at once against a real `aif serve`, on SQLite and PostgreSQL.

The project's budget covers only part of the burst, so an overspend would show. Every answer
is 201 (placed, or pending until budget comes back), a 4xx refusal (every tenth job asks for
more GPUs per node than any node has) or 503 with ``Retry-After`` — never a 500 — and
afterwards the books audit clean, nothing is reserved or used beyond what was granted, and
exactly the accepted jobs are stored. Waits are on the server's answers, never on a clock.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Job
from aifactory.domain.enums import Role
from aifactory.server import free_port
from aifactory.services import ledger
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import Person, make_person
from aifactory.testing.serving import stop_group, wait_healthy

pytestmark = pytest.mark.slow

AIF = str(Path(sys.executable).parent / "aif")
CALLERS = 200
BUDGET_HOURS = 60  # each job reserves 1 GPU-hour: budget for under a third of the burst
REFUSED_EVERY = 10  # 16 GPUs per node: no node has them, refused with 409 and nothing stored
QUEUE_SHORT_S = 0.5


@dataclass(frozen=True)
class Answer:
    n: int
    status: int
    seconds: float
    retry_after: str | None
    code: str | None


@pytest.fixture
def funded(db: Database, settings: Settings) -> tuple[Person, str]:
    """anna, member of a Playground project on LUMI AIF with BUDGET_HOURS GPU-hours."""
    operator = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    with TestClient(create_app(settings, db)) as api:
        code, _ = award(api, anna, operator, hours=BUDGET_HOURS)
    return anna, code


@pytest.fixture
def server(
    db: Database, settings: Settings, tmp_path: Path, funded: tuple[Person, str], queue: str
) -> Iterator[str]:
    """`aif serve` (API only, one worker) on the test's database; yields its URL.

    ``queue`` "short" lets a request wait only QUEUE_SHORT_S for a slot, so that most of the
    burst is turned away with 503 at once instead of waiting (the default waits 5 s).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(
        AIF_DATA_DIR=str(settings.data_dir),
        AIF_CONFIG_DIR=str(tmp_path / "config"),
        AIF_DATABASE_URL=db.url,
        AIF_LOCAL_GPUS_PER_SITE="1024",  # capacity never binds here: the budget does
        PYTHONUNBUFFERED="1",
    )
    if queue == "short":
        env["AIF_API_QUEUE_TIMEOUT_S"] = str(QUEUE_SHORT_S)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [AIF, "serve", "--no-controllers", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url
    finally:
        stop_group(proc)
        text = log.read_text(errors="replace")
        assert "unhandled error" not in text, text[-5000:]


def _spec(project: str, n: int) -> dict[str, object]:
    gpus = 16 if n % REFUSED_EVERY == 0 else 1
    return {
        "name": f"burst-{n}",
        "project": project,
        "command": [sys.executable, "-c", "pass"],
        "resources": {"nodes": 1, "gpus_per_node": gpus, "time_limit": 3600},
    }


async def _burst(url: str, person: Person, project: str) -> list[Answer]:
    limits = httpx.Limits(max_connections=CALLERS, max_keepalive_connections=CALLERS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as http:

        async def one(n: int) -> Answer:
            started = time.perf_counter()
            r = await http.post("/api/v1/jobs", json=_spec(project, n), headers=person.headers)
            took = time.perf_counter() - started
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            return Answer(n, r.status_code, took, r.headers.get("retry-after"), code)

        return await asyncio.gather(*(one(n) for n in range(CALLERS)))


def _figures(label: str, answers: list[Answer]) -> str:
    kinds = Counter(
        "201" if a.status == 201 else "503" if a.status == 503 else f"{a.status // 100}xx"
        for a in answers
    )
    raced = sum(a.status == 409 and a.n % REFUSED_EVERY != 0 for a in answers)
    times = sorted(a.seconds for a in answers)
    p99 = times[min(len(times) - 1, round(0.99 * len(times)) - 1)]
    return (
        f"{label}: {CALLERS} concurrent submissions: {dict(sorted(kinds.items()))} "
        f"(409 for runnable jobs: {raced}); p50 {statistics.median(times):.2f} s, "
        f"p99 {p99:.2f} s, max {times[-1]:.2f} s"
    )


@pytest.mark.parametrize("queue", ["default", "short"])
def test_200_concurrent_submissions_get_201_4xx_or_503_and_never_overspend(
    backend: str, queue: str, db: Database, funded: tuple[Person, str], server: str
) -> None:
    anna, project = funded
    answers = asyncio.run(_burst(server, anna, project))
    print(_figures(f"{backend}, {queue} queue timeout", answers))

    unexpected = [a for a in answers if a.status != 201 and not 400 <= a.status < 500]
    assert all(a.status == 503 for a in unexpected), unexpected  # never a 500
    assert all(a.retry_after and a.retry_after.isdigit() for a in unexpected), unexpected
    assert {a.code for a in unexpected} <= {"overloaded", "backend_unavailable"}, unexpected
    refused = [a for a in answers if 400 <= a.status < 500]
    assert {a.status for a in refused} <= {409}, refused
    # A job that fits is never refused because concurrent submissions took the budget it saw:
    # it waits (201 pending) and is placed or failed by the broker with fresh figures.
    assert all(a.n % REFUSED_EVERY == 0 for a in refused), refused
    impossible = [a for a in answers if a.n % REFUSED_EVERY == 0]
    assert {a.status for a in impossible} <= {409, 503}, impossible
    accepted = sum(a.status == 201 for a in answers)
    assert accepted > 0

    with db.session() as s:
        stored = s.scalar(select(func.count()).select_from(Job).where(Job.project_code == project))
        assert stored == accepted  # a refused or overloaded submission stored nothing
        assert ledger.audit(s) == []
        for a in s.scalars(select(Allocation).where(Allocation.project_code == project)):
            held = (a.reserved_milli or 0) + (a.used_milli or 0)
            assert 0 < held <= (a.granted_milli or 0), (a.id, held, a.granted_milli)
