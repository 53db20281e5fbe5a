"""Creates go with an Idempotency-Key and are retried, same key, while their outcome is unknown."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from aifactory import client as client_module
from aifactory import errors
from aifactory.client import CREATE_ATTEMPTS, MAX_BACKOFF_S, Client

JOB = {
    "id": 7,
    "name": "j",
    "project": "P",
    "owner": "anna",
    "state": "placed",
    "attempt": 1,
    "gpus": 1,
    "time_limit_s": 60,
    "factory": "LUMI AIF",
    "partition": "LUMI-AI/gpu",
    "reserved_gpu_hours": "0.017",
    "charged_gpu_hours": "0",
    "exit_code": None,
    "reason": "placed",
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "ended_at": None,
}
Answer = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=slept.append))
    return slept


def scripted(answers: list[Answer | Exception]) -> tuple[Client, list[httpx.Request]]:
    """A client whose requests get ``answers`` in order (an exception is raised instead)."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[len(seen) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer(request)

    return Client("http://aif.test", "t", transport=httpx.MockTransport(handle)), seen


def created(_: httpx.Request) -> httpx.Response:
    return httpx.Response(201, json=JOB)


def unavailable(retry_after: str | None) -> Answer:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body: dict[str, Any] = {"error": {"code": "backend_unavailable", "message": "busy"}}
    return lambda _: httpx.Response(503, json=body, headers=headers)


def test_a_dropped_connection_is_retried_with_the_same_new_key(waits: list[float]) -> None:
    drop = httpx.RemoteProtocolError("Server disconnected without sending a response.")
    client, seen = scripted([drop, httpx.ReadError("reset"), created])
    assert client.submit_job({"name": "j"}).id == 7
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 3 and len(keys) == 1
    assert uuid.UUID(keys.pop()).version == 4
    assert waits == [0.25, 0.5]


def test_each_call_has_its_own_key_unless_the_caller_gives_one(waits: list[float]) -> None:
    client, seen = scripted([created, created, created])
    client.submit_job({})
    client.submit_job({})
    client.submit_job({}, idempotency_key="mine")
    first, second, third = (r.headers["Idempotency-Key"] for r in seen)
    assert first != second and third == "mine"
    assert waits == []


def test_503_waits_for_retry_after_capped(waits: list[float]) -> None:
    client, seen = scripted([unavailable("2"), unavailable("3600"), unavailable(None), created])
    assert client.submit_job({}).id == 7
    assert waits == [2.0, MAX_BACKOFF_S, 1.0]  # the last: no Retry-After, the third backoff
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1


def test_tries_are_bounded(waits: list[float]) -> None:
    client, seen = scripted([httpx.ConnectError("refused")] * CREATE_ATTEMPTS)
    with pytest.raises(errors.BackendUnavailable, match="cannot reach"):
        client.submit_job({})
    assert len(seen) == CREATE_ATTEMPTS and max(waits) <= MAX_BACKOFF_S
    client, seen = scripted([unavailable("0")] * CREATE_ATTEMPTS)
    with pytest.raises(errors.BackendUnavailable, match="busy"):
        client.submit_job({})
    assert len(seen) == CREATE_ATTEMPTS


def test_refusals_are_not_retried(waits: list[float]) -> None:
    body = {"error": {"code": "conflict", "message": "no factory"}}
    client, seen = scripted([lambda _: httpx.Response(409, json=body)])
    with pytest.raises(errors.Conflict):
        client.submit_job({})
    assert len(seen) == 1 and waits == []


def test_proposals_carry_a_key_and_other_calls_are_not_retried(waits: list[float]) -> None:
    client, seen = scripted([httpx.ReadError("reset"), created])
    with pytest.raises(errors.BackendUnavailable):
        client.list_jobs()  # a read: one try, as before
    assert len(seen) == 1 and "Idempotency-Key" not in seen[0].headers
    client, seen = scripted([httpx.ReadError("reset"), lambda _: httpx.Response(422, json={})])
    with pytest.raises(errors.AIFactoryError):
        client.create_proposal(title="t", idempotency_key="p-1")
    assert [r.headers["Idempotency-Key"] for r in seen] == ["p-1", "p-1"]
    assert [r.url.path for r in seen] == ["/api/v1/proposals"] * 2
