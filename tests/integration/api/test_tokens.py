"""API tokens: random, stored only as a hash, shown once, expiring and revocable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text

from aifactory.db.engine import Database
from aifactory.db.models import ApiToken
from aifactory.services import identity
from aifactory.testing.people import Person


def test_secret_is_shown_once_and_only_its_hash_is_stored(
    db: Database, api: TestClient, admin: Person
) -> None:
    created = api.post("/api/v1/tokens", json={"name": "laptop"}, headers=admin.headers).json()
    secret = created["token"]
    assert secret.startswith("aif_") and len(secret) > 40
    with db.engine.connect() as conn:
        dump = " ".join(str(row) for row in conn.execute(text("SELECT * FROM api_tokens")))
    assert secret not in dump
    assert identity.hash_token(secret) in dump
    listed = api.get("/api/v1/tokens", headers=admin.headers).json()
    assert all("token" not in t for t in listed)
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200


def test_two_tokens_are_never_equal(db: Database) -> None:
    with db.session() as s:
        identity.create_user(s, "twin", "t@x.eu")
        a = identity.create_token(s, "twin", "a", 1)
        b = identity.create_token(s, "twin", "b", 1)
    assert a.token != b.token


def test_expired_token_is_refused(db: Database, api: TestClient) -> None:
    past = datetime.now(UTC) - timedelta(days=2)
    with db.session() as s:
        identity.create_user(s, "old", "o@x.eu")
        token = identity.create_token(s, "old", "old", ttl_days=1, now=past)
    response = api.get("/api/v1/me", headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API token expired"


def test_revoked_token_stops_working_at_once(db: Database, api: TestClient, admin: Person) -> None:
    created = api.post("/api/v1/tokens", json={"name": "x"}, headers=admin.headers).json()
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert api.get("/api/v1/me", headers=headers).status_code == 200
    assert api.delete(f"/api/v1/tokens/{created['id']}", headers=admin.headers).status_code == 200
    response = api.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API token revoked"
    with db.session() as s:
        row = s.scalar(select(ApiToken).where(ApiToken.id == created["id"]))
        assert row is not None and row.revoked_at is not None


def test_garbage_and_missing_tokens_get_401_with_bearer_challenge(api: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
        response = api.get("/api/v1/factories", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthenticated"


def test_admin_creates_token_for_a_user_who_then_sees_only_theirs(
    api: TestClient, admin: Person
) -> None:
    api.post("/api/v1/users", json={"username": "bea", "email": "b@x.eu"}, headers=admin.headers)
    made = api.post(
        "/api/v1/tokens", json={"username": "bea", "ttl_days": 7}, headers=admin.headers
    ).json()
    assert made["username"] == "bea"
    bea = {"Authorization": f"Bearer {made['token']}"}
    assert [t["username"] for t in api.get("/api/v1/tokens", headers=bea).json()] == ["bea"]
    days = datetime.fromisoformat(made["expires_at"]) - datetime.fromisoformat(made["created_at"])
    assert days == timedelta(days=7)
