"""`Idempotency-Key` on POST /jobs and POST /proposals, on SQLite and on PostgreSQL.

The same key within 24 hours returns the original object (201, ``Idempotent-Replayed: true``);
with a different body it is refused; keys are per user; a failed create leaves the key free;
concurrent requests with one key create one object. And the failure this is for: the server
commits a submission but the client's connection drops before the answer arrives; the client
(Python or `aif submit`) retries with the same key and gets the one job that exists.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.client import Client
from aifactory.db.engine import Database
from aifactory.db.models import IdempotencyKey, Job, Proposal
from aifactory.server import BackgroundServer
from aifactory.services import identity
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, set_clock
from aifactory.testing.jobs import run_watched, spec
from aifactory.testing.people import Person

REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def anna(db: Database) -> Person:
    return member_of(db, "anna", "Nordic Tokens Oy")


@pytest.fixture
def project(api: TestClient, anna: Person, operator: Person) -> str:
    """A project of anna's with an allocation on LUMI AIF."""
    code, _ = award(api, anna, operator)
    return code


def count(db: Database, model: Any) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def submit(api: TestClient, who: Person, key: str | bytes, body: dict[str, Any]) -> httpx.Response:
    headers = {**who.headers, "Idempotency-Key": key}
    return api.post("/api/v1/jobs", headers=headers, json=body)


def test_the_same_key_twice_creates_one_job_and_replays_it(
    api: TestClient, db: Database, anna: Person, project: str
) -> None:
    first = submit(api, anna, "key-1", spec(project, ["true"]))
    again = submit(api, anna, "key-1", spec(project, ["true"]))
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert REPLAYED not in first.headers
    assert again.headers[REPLAYED] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["state"] == first.json()["state"]
    assert count(db, Job) == 1
    other = submit(api, anna, "key-2", spec(project, ["true"]))
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert count(db, Job) == 2


def test_without_a_key_every_request_creates(
    api: TestClient, db: Database, anna: Person, project: str
) -> None:
    for _ in range(2):
        response = api.post("/api/v1/jobs", headers=anna.headers, json=spec(project, ["true"]))
        assert response.status_code == 201 and REPLAYED not in response.headers
    assert count(db, Job) == 2 and count(db, IdempotencyKey) == 0


def test_the_same_key_with_a_different_request_is_refused(
    api: TestClient, db: Database, anna: Person, project: str
) -> None:
    assert submit(api, anna, "k", spec(project, ["true"])).status_code == 201
    response = submit(api, anna, "k", spec(project, ["false"]))
    assert response.status_code == 422
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "Idempotency-Key"
    assert detail["rule"] == "reused_with_different_request"
    assert count(db, Job) == 1


@pytest.mark.parametrize(
    ("key", "rule"),
    [("", "min_length"), ("k" * 256, "max_length"), (b"cl\xe9", "printable_ascii")],
)
def test_malformed_keys_are_refused_naming_the_header(
    api: TestClient, db: Database, anna: Person, project: str, key: str | bytes, rule: str
) -> None:
    response = submit(api, anna, key, spec(project, ["true"]))
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert (detail["field"], detail["rule"]) == ("Idempotency-Key", rule)
    assert count(db, Job) == 0
    assert submit(api, anna, "k" * 255, spec(project, ["true"])).status_code == 201


def test_keys_belong_to_their_user(
    api: TestClient, db: Database, anna: Person, admin: Person, project: str
) -> None:
    mine = submit(api, anna, "shared", spec(project, ["true"]))
    theirs = submit(api, admin, "shared", spec(project, ["true"]))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["owner"] == admin.username
    assert count(db, Job) == 2


def test_a_failed_create_leaves_the_key_unused(
    api: TestClient, db: Database, anna: Person, project: str
) -> None:
    refused = submit(api, anna, "k", spec("NO-SUCH-PROJECT", ["true"]))
    assert refused.status_code == 422
    assert refused.json()["error"]["details"][0]["field"] == "project"
    response = submit(api, anna, "k", spec(project, ["true"]))  # another body: the key is free
    assert response.status_code == 201 and REPLAYED not in response.headers
    assert count(db, Job) == 1 and count(db, IdempotencyKey) == 1


def test_a_key_older_than_24_hours_is_forgotten(
    api: TestClient, db: Database, anna: Person, project: str
) -> None:
    with db.session() as s:  # a token that outlives the 24 hours
        anna = Person(anna.username, identity.create_token(s, anna.username, "week", 7).token)
    start = datetime.now(UTC)
    set_clock(api, start)
    first = submit(api, anna, "daily", spec(project, ["true"]))
    set_clock(api, start + timedelta(hours=23, minutes=59))
    replay = submit(api, anna, "daily", spec(project, ["true"]))
    assert replay.headers[REPLAYED] == "true" and replay.json()["id"] == first.json()["id"]
    set_clock(api, start + timedelta(hours=24, seconds=1))
    fresh = submit(api, anna, "daily", spec(project, ["false"]))  # any body: a new key
    assert fresh.status_code == 201, fresh.text
    assert REPLAYED not in fresh.headers and fresh.json()["id"] != first.json()["id"]
    again = submit(api, anna, "daily", spec(project, ["false"]))
    assert again.headers[REPLAYED] == "true" and again.json()["id"] == fresh.json()["id"]
    assert count(db, Job) == 2 and count(db, IdempotencyKey) == 1


def test_a_proposal_is_created_once_per_key(api: TestClient, db: Database, anna: Person) -> None:
    body = {
        "call_id": "lumi-aif-pg",
        "title": "once",
        "organisation": "Nordic Tokens Oy",
        "research_kind": "open_rd",
        "gpu_hours": 100,
        "duration_months": 1,
        "partition": "LUMI-AI/gpu",
    }
    headers = {**anna.headers, "Idempotency-Key": "proposal-1"}
    first = api.post("/api/v1/proposals", headers=headers, json=body)
    again = api.post("/api/v1/proposals", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.headers[REPLAYED] == "true" and again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "draft"
    changed = api.post("/api/v1/proposals", headers=headers, json={**body, "title": "twice"})
    assert changed.status_code == 422
    assert changed.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert count(db, Proposal) == 1


CALLERS = 10


def test_concurrent_requests_with_one_key_create_one_job(
    db: Database, settings: Settings, anna: Person, project: str
) -> None:
    start = threading.Barrier(CALLERS)
    headers = {**anna.headers, "Idempotency-Key": "burst"}

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            start.wait()
            return http.post("/api/v1/jobs", headers=headers, json=spec(project, ["true"]))

    with BackgroundServer(settings, db) as server, ThreadPoolExecutor(CALLERS) as pool:
        responses = list(pool.map(call, range(CALLERS)))
    assert [r.status_code for r in responses] == [201] * CALLERS, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get(REPLAYED) == "true" for r in responses) == CALLERS - 1
    assert count(db, Job) == 1 and count(db, IdempotencyKey) == 1


def http_message(stream: IO[bytes]) -> bytes | None:
    """One HTTP/1.1 message (head and Content-Length body), or None at the end of the stream."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            return None
        head += line
    found = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return head + stream.read(int(found.group(1)) if found else 0)


class DroppingProxy:
    """A TCP proxy that loses the answer to the first POST /api/v1/jobs.

    It forwards that request, reads the server's whole response (the job is committed by then),
    and closes the client's connection instead of relaying it. Everything else is relayed.
    """

    def __init__(self, upstream: str) -> None:
        url = httpx.URL(upstream)
        self.upstream = (url.host, url.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.lost: list[bytes] = []  # responses the client never saw
        self.relayed_posts = 0
        self._lock = threading.Lock()

    def __enter__(self) -> DroppingProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        server = socket.create_connection(self.upstream)
        with client, server, client.makefile("rb") as inbound, server.makefile("rb") as back:
            while (request := http_message(inbound)) is not None:
                server.sendall(request)
                response = http_message(back)
                if response is None or self._lose(request, response):
                    return  # closes the client's connection: it sees no response
                client.sendall(response)

    def _lose(self, request: bytes, response: bytes) -> bool:
        if not request.startswith(b"POST /api/v1/jobs "):
            return False
        with self._lock:
            if self.lost:
                self.relayed_posts += 1
                return False
            self.lost.append(response)
            return True

    def lost_job_id(self) -> int:
        [response] = self.lost
        assert response.startswith(b"HTTP/1.1 201"), response[:200]
        found = re.search(rb'"id":(\d+)', response)
        assert found, response
        return int(found.group(1))


def test_the_client_retries_a_dropped_submission_and_gets_the_one_job(
    db: Database, settings: Settings, anna: Person, project: str
) -> None:
    with (
        BackgroundServer(settings, db) as server,
        DroppingProxy(server.url) as proxy,
        Client(proxy.url, anna.token) as client,
    ):
        job = client.submit_job(spec(project, ["true"]))
    assert proxy.relayed_posts == 1  # the retry
    assert job.id == proxy.lost_job_id()
    assert count(db, Job) == 1


def test_aif_submit_retries_a_dropped_submission_and_prints_the_one_job(
    db: Database, settings: Settings, anna: Person, project: str, tmp_path: Path
) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(spec(project, ["true"])))
    aif = Path(sys.executable).parent / "aif"
    with BackgroundServer(settings, db) as server, DroppingProxy(server.url) as proxy:
        env = {**os.environ, "AIF_URL": proxy.url, "AIF_TOKEN": anna.token, "COLUMNS": "200"}
        env["AIF_CONFIG_DIR"] = str(tmp_path / "cfg")
        done = run_watched([aif, "submit", path], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert proxy.relayed_posts == 1
    assert f"job {proxy.lost_job_id()} placed" in done.stdout
    assert count(db, Job) == 1
