"""Input the API refuses before any service runs: ids beyond the columns' range, dates before
the federation existed, and bodies over 1 MiB, also when sent in chunks without a length."""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aifactory.api.app import create_app
from aifactory.api.params import MAX_ID
from aifactory.db.engine import Database
from aifactory.domain.dates import FEDERATION_START
from aifactory.domain.jobspec import MAX_SPEC_BYTES
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.people import Person

API = "/api/v1"


def _id_parameters() -> list[tuple[str, str, dict[str, Any]]]:
    """Every integer path or query parameter that names a row: ``*_id`` and ``before``."""
    app = create_app(Settings(data_dir=Path("unused")), Database("sqlite://"))
    found = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for p in operation.get("parameters", []):
                options = p["schema"].get("anyOf", [p["schema"]])
                numbers = [o for o in options if o.get("type") == "integer"]
                if numbers and (p["name"].endswith("_id") or p["name"] == "before"):
                    found += [(f"{method.upper()} {path}", p["name"], o) for o in numbers]
    return found


def test_every_id_parameter_is_bounded_to_the_column_range() -> None:
    params = _id_parameters()
    assert len(params) >= 15  # the proposal, job, allocation and token ids, and pages
    unbounded = [
        f"{operation} {name}: {schema}"
        for operation, name, schema in params
        if (schema.get("minimum"), schema.get("maximum")) != (1, MAX_ID)
    ]
    assert unbounded == []


@pytest.mark.parametrize(
    "path",
    [
        f"/jobs/{MAX_ID + 1}",
        f"/jobs/{MAX_ID + 1}/logs",
        f"/proposals/{MAX_ID + 1}",
        f"/allocations/{MAX_ID + 1}/ledger",
        f"/jobs?before={MAX_ID + 1}",
        "/jobs/0",
    ],
)
def test_an_id_outside_the_range_is_refused_naming_it(
    api: TestClient, admin: Person, path: str
) -> None:
    response = api.get(API + path, headers=admin.headers)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] in ("job_id", "proposal_id", "allocation_id", "before")
    assert detail["rule"] in ("less_than_equal", "greater_than_equal")


def test_a_get_on_the_expire_action_is_a_405_not_an_id(api: TestClient, admin: Person) -> None:
    response = api.get(f"{API}/allocations/expire", headers=admin.headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("GET", "/reports/usage?start=0", None, "start"),  # once read as 1970-01-01
        ("GET", "/reports/usage?start=2023-12-31", None, "start"),
        ("GET", "/reports/usage?start=2025-01-01&end=1999-01-01", None, "end"),
        ("GET", "/reports/usage.csv?end=2000-02-29", None, "end"),
        ("POST", "/calls/lumi-aif-ls/decisions", {"cutoff": "2020-01-01"}, "cutoff"),
        ("POST", "/calls/lumi-aif-ls/decisions", {"cutoff": 0}, "cutoff"),
        (
            "POST",
            "/eligibility/check",
            {
                "call_id": "lumi-aif-pg",
                "organisation": "X",
                "research_kind": "open_rd",
                "start_date": "1970-01-01",
            },
            "start_date",
        ),
    ],
)
def test_a_date_before_the_federation_is_refused_naming_the_field(
    api: TestClient, admin: Person, method: str, path: str, body: Any, field: str
) -> None:
    response = api.request(method, API + path, headers=admin.headers, json=body)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == field
    assert detail["rule"] in ("not_before_federation", "date_format")


def test_the_federations_first_day_is_a_date_like_any_other(api: TestClient, admin: Person) -> None:
    start = FEDERATION_START.isoformat()
    response = api.get(f"{API}/reports/usage?start={start}&end={start}", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["start"] == start


def _chunked_post(url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """POST ``body`` in 64 KiB chunks with no Content-Length, stop sending as soon as the
    server answers, and return the raw response."""
    host, port = url.removeprefix("http://").split(":")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Transfer-Encoding: chunked",
        "Content-Type: application/json",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection((host, int(port)), timeout=120) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        sent = 0
        while sent < len(body) and not select.select([sock], [], [], 0)[0]:
            part = body[sent : sent + 65536]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            sent += len(part)
        if sent == len(body):
            sock.sendall(b"0\r\n\r\n")
        response = b""
        while not _complete(response):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    return response


def _complete(raw: bytes) -> bool:
    head, found, body = raw.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return bool(found) and len(body) >= (int(lengths[0].split(b":")[1]) if lengths else 0)


def test_a_chunked_body_over_the_limit_gets_413_from_a_real_server(
    db: Database, settings: Settings, applicant: Person
) -> None:
    with BackgroundServer(settings, db) as server:
        big = b'{"name": "big", "x": "' + b"x" * (2 * MAX_SPEC_BYTES)
        raw = _chunked_post(server.url, f"{API}/jobs", applicant.headers, big)
        small = _chunked_post(server.url, f"{API}/tokens", applicant.headers, b'{"name": "c"}')
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), raw[:500]
    error = json.loads(body)["error"]
    assert error["code"] == "too_large"
    assert error["details"][0] == {
        "field": "body",
        "rule": "max_size",
        "message": f"at most {MAX_SPEC_BYTES} bytes",
    }
    assert small.startswith(b"HTTP/1.1 201 "), small[:500]  # within the limit: read as usual
