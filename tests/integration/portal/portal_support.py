"""Helpers for portal tests: passwords, CSRF tokens from pages, sign-in through the form."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.services import sessions

PASSWORD = "correct horse battery staple"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def set_password(db: Database, username: str, password: str = PASSWORD) -> None:
    with db.session() as s:
        sessions.set_password(s, username, password)


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Sign in through the form; returns the session's CSRF token (from a signed-in page)."""
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={
            "csrf_token": token,
            "method": "password",
            "username": username,
            "password": password,
            "next": "/",
        },
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/calls").text)
