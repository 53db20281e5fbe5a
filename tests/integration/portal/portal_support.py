"""Helpers for portal tests: passwords, CSRF tokens from pages, sign-in through the form."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.services import sessions

PASSWORD = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# One UI step (a click, a fragment loading) on a loaded machine; a ceiling, not a budget.
UI_STEP_MS = 60_000

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


def missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium); browsers are never downloaded"
    return None
