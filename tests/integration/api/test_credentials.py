"""Credentials: brute force is locked out, tokens never outlive their minter, passwords need the
current one, tokens record their use, and every sign-in and token act is in the audit log."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from aifactory.db.engine import Database
from aifactory.db.types import utcnow
from aifactory.server import BackgroundServer, build_app
from aifactory.services import sessions
from aifactory.settings import Settings
from aifactory.testing.people import Person

API = "/api/v1"
PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    page = client.get("/login")
    match = CSRF.search(page.text)
    assert match, page.text
    form = {
        "csrf_token": match.group(1),
        "method": "password",
        "username": username,
        "password": password,
        "next": "/",
    }
    return client.post("/login", data=form)


def _audit(client: httpx.Client | TestClient, admin: Person, **filters: str) -> list[dict]:
    r = client.get(f"{API}/audit", params=filters, headers=admin.headers)
    assert r.status_code == 200, r.text
    events: list[dict] = r.json()["events"]
    return events


def test_password_brute_force_is_locked_out_even_for_the_right_password(
    db: Database, settings: Settings, applicant: Person, admin: Person
) -> None:
    """200 wrong portal passwords over real HTTP: the account locks after the limit (10), the
    right password is then refused with 429 and a Retry-After, the lock shows to admins, and
    once an admin lifts it the right password works."""
    with db.session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    statuses: list[int] = []
    with BackgroundServer(settings, db) as server, httpx.Client(base_url=server.url) as web:
        for _ in range(200):
            statuses.append(_login(web, "anna", "wrong password!").status_code)
        right = _login(web, "anna", PASSWORD)
        locks = web.get(f"{API}/lockouts", headers=admin.headers).json()
        failed = _audit(web, admin, action="login", actor="anna")
        lockout = _audit(web, admin, action="lockout")
        web.delete(f"{API}/lockouts/user:anna", headers=admin.headers).raise_for_status()
        after = _login(web, "anna", PASSWORD)
    limit = settings.auth_account_failures
    print(f"200 wrong passwords: {statuses.count(401)} x 401, {statuses.count(429)} x 429")
    assert statuses[:limit] == [401] * limit
    assert set(statuses[limit:]) == {429}
    assert right.status_code == 429 and "try again in" in right.text
    assert {"key": "user:anna", "locked_now": True}.items() <= _by_key(locks)["user:anna"].items()
    assert len([e for e in failed if e["outcome"] == "failed"]) == limit
    assert all(e["address"] == "127.0.0.1" for e in failed)
    assert [e["object_id"] for e in lockout] == ["user:anna"]
    assert after.status_code == 303, after.text


def _by_key(rows: list[dict]) -> dict[str, dict]:
    return {r["key"]: r for r in rows}


def test_guessed_tokens_lock_the_address_but_real_tokens_keep_working(
    db: Database, settings: Settings, applicant: Person, admin: Person
) -> None:
    """200 unknown tokens from one address: 401 up to the address limit, then 429 with
    Retry-After; a real token from the same address still works (256-bit tokens cannot be
    guessed, and one broken script must not lock out a whole NAT)."""
    statuses, retry_after = [], None
    with BackgroundServer(settings, db) as server, httpx.Client(base_url=server.url) as web:
        for i in range(200):
            r = web.get(f"{API}/me", headers={"Authorization": f"Bearer aif_guess{i:04d}"})
            statuses.append(r.status_code)
            retry_after = r.headers.get("retry-after", retry_after)
        real = web.get(f"{API}/me", headers=applicant.headers)
        rejected = _audit(web, admin, action="token_rejected", limit="500")
        locks = _by_key(web.get(f"{API}/lockouts", headers=admin.headers).json())
    limit = settings.auth_address_failures
    print(f"200 guessed tokens: {statuses.count(401)} x 401, {statuses.count(429)} x 429")
    assert statuses[:limit] == [401] * limit
    assert set(statuses[limit:]) == {429}
    assert retry_after is not None and int(retry_after) > 0
    assert real.status_code == 200
    assert len(rejected) == limit
    assert locks["addr:127.0.0.1"]["locked_now"] is True


def test_a_token_cannot_mint_one_that_outlives_it_and_revoking_revokes_what_it_minted(
    api: TestClient, applicant: Person, admin: Person
) -> None:
    longer = api.post(
        f"{API}/tokens", json={"name": "forever", "ttl_days": 3650}, headers=applicant.headers
    )
    assert longer.status_code == 422
    assert longer.json()["error"]["details"][0]["field"] == "ttl_days"
    assert longer.json()["error"]["details"][0]["rule"] == "within_parent"

    child = api.post(f"{API}/tokens", json={"name": "child"}, headers=applicant.headers).json()
    parent = next(t for t in _tokens(api, applicant) if t["name"] == "test")
    assert child["expires_at"] <= parent["expires_at"]
    grandchild = api.post(
        f"{API}/tokens",
        json={"name": "grandchild"},
        headers={"Authorization": f"Bearer {child['token']}"},
    ).json()
    for_anna = api.post(
        f"{API}/tokens", json={"name": "by-admin", "username": "anna"}, headers=admin.headers
    ).json()

    assert api.delete(f"{API}/tokens/{parent['id']}", headers=applicant.headers).status_code == 200
    for token in (child, grandchild):
        r = api.get(f"{API}/me", headers={"Authorization": f"Bearer {token['token']}"})
        assert r.status_code == 401 and "revoked" in r.text
    admin_made = api.get(f"{API}/me", headers={"Authorization": f"Bearer {for_anna['token']}"})
    assert admin_made.status_code == 200  # an admin's token for someone else stands alone

    mints = _audit(api, admin, action="token_mint", actor="anna")
    assert {e["object_id"] for e in mints} == {str(child["id"]), str(grandchild["id"])}
    revoke = _audit(api, admin, action="token_revoke")[0]
    assert sorted(revoke["detail"]["revoked"]) == sorted(
        [parent["id"], child["id"], grandchild["id"]]
    )


def _tokens(api: TestClient, person: Person) -> list[dict]:
    r = api.get(f"{API}/tokens", headers=person.headers)
    assert r.status_code == 200, r.text
    tokens: list[dict] = r.json()
    return tokens


def test_changing_a_password_needs_the_current_one_unless_an_admin_does_it(
    db: Database, settings: Settings, applicant: Person, admin: Person
) -> None:
    url = f"{API}/users/anna/password"
    new = {"password": "a brand new passphrase"}
    with TestClient(build_app(settings, db), follow_redirects=False) as web:
        first = web.put(url, json={"password": PASSWORD}, headers=applicant.headers)
        assert first.status_code == 204  # no password yet: the token holder sets the first one
        missing = web.put(url, json=new, headers=applicant.headers)
        wrong = web.put(
            url, json={**new, "current_password": "not it at all"}, headers=applicant.headers
        )
        right = web.put(url, json={**new, "current_password": PASSWORD}, headers=applicant.headers)
        by_admin = web.put(url, json={"password": "set by the admin ok"}, headers=admin.headers)
        locks = _by_key(web.get(f"{API}/lockouts", headers=admin.headers).json())
        changes = _audit(web, admin, action="password_set")
    assert (
        missing.status_code == 422 and missing.json()["error"]["details"][0]["rule"] == "required"
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["details"][0]["rule"] == "matches"
    assert right.status_code == 204 and by_admin.status_code == 204
    assert locks["user:anna"]["failures"] == 1  # the wrong guess counted like a failed sign-in
    assert [(e["actor"], e["outcome"]) for e in changes] == [
        ("ada", "ok"),
        ("anna", "ok"),
        ("anna", "failed"),
        ("anna", "ok"),
    ]


def test_a_password_change_ends_the_users_portal_sessions(
    db: Database, settings: Settings, applicant: Person
) -> None:
    with db.session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    with BackgroundServer(settings, db) as server, httpx.Client(base_url=server.url) as web:
        assert _login(web, "anna", PASSWORD).status_code == 303
        assert web.get("/projects").status_code == 200
        change = {"password": "another long passphrase", "current_password": PASSWORD}
        r = web.put(f"{API}/users/anna/password", json=change, headers=applicant.headers)
        assert r.status_code == 204
        assert web.get("/projects").status_code == 303  # signed out: back to the sign-in page


def test_tokens_record_when_they_were_last_used(
    db: Database, api: TestClient, applicant: Person
) -> None:
    with db.session() as s:
        assert s.scalar(text("SELECT last_used_at FROM api_tokens")) is None
    before = utcnow() - timedelta(seconds=1)
    used = _tokens(api, applicant)[0]["last_used_at"]  # this very call is a use
    assert used is not None and datetime.fromisoformat(used) >= before


def test_the_audit_log_is_for_admins_and_append_only(
    db: Database, api: TestClient, applicant: Person, admin: Person
) -> None:
    assert api.get(f"{API}/audit", headers=applicant.headers).status_code == 403
    assert api.get(f"{API}/lockouts", headers=applicant.headers).status_code == 403
    api.post(f"{API}/tokens", json={"name": "x"}, headers=applicant.headers).raise_for_status()
    assert _audit(api, admin, action="token_mint")
    for statement in ("UPDATE audit_events SET actor = 'someone else'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(statement))
    with db.session() as s:
        assert s.scalar(text("SELECT count(*) FROM audit_events WHERE actor = 'anna'")) == 1


def test_lock_ends_by_itself(db: Database, settings: Settings, applicant: Person) -> None:
    """A short lockout (1 s) ends on its own: the right password works again afterwards."""
    quick = settings.model_copy(update={"auth_account_failures": 2, "auth_lockout_s": 1})
    with db.session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    with BackgroundServer(quick, db) as server, httpx.Client(base_url=server.url) as web:
        assert [_login(web, "anna", "nope nope").status_code for _ in range(3)] == [401, 401, 429]
        r = _login(web, "anna", PASSWORD)
        while r.status_code == 429:  # waits on the lock's own end, however slow the machine
            time.sleep(0.2)
            r = _login(web, "anna", PASSWORD)
        assert r.status_code == 303
