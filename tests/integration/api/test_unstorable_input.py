"""Values the database cannot hold (huge ids, NUL characters) are refused as input, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from aifactory.testing.people import Person

HUGE = ["2147483648", "9223372036854775808"]  # past PostgreSQL's int4, past SQLite's int64


@pytest.mark.parametrize("resource", ["jobs", "proposals", "allocations"])
@pytest.mark.parametrize("number", HUGE)
def test_an_id_beyond_the_database_range_is_not_a_server_error(
    api: TestClient, admin: Person, resource: str, number: str
) -> None:
    response = api.get(f"/api/v1/{resource}/{number}", headers=admin.headers)
    assert response.status_code in (404, 422), response.text
    assert response.json()["error"]["code"] in ("not_found", "invalid")


def test_text_with_a_nul_character_is_refused_or_stored_but_never_a_server_error(
    api: TestClient, admin: Person
) -> None:
    body = {"username": "nul", "email": "nul@example.eu", "full_name": "A\x00B"}
    response = api.post("/api/v1/users", headers=admin.headers, json=body)
    assert response.status_code in (201, 422), response.text
    again = api.get("/api/v1/users", headers=admin.headers)
    assert again.status_code == 200  # the connection and the data are fine afterwards
