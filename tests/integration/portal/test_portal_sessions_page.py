"""The portal's Sessions page over HTTP: start a session from the form (bad input comes back
beside its fields, as typed, and starts nothing), see it listed while it starts (the page then
refreshes itself), stop it; nobody else can stop it. No JupyterLab runs here: the portal's test
server has no controllers, so a started session stays `starting` with its job placed.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from portal_support import csrf_of, set_password, sign_in
from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import InteractiveSession, Job
from aifactory.domain.enums import Role
from aifactory.testing.access import award, member_of
from aifactory.testing.people import Person, make_person


def _browser(portal: TestClient, db: Database, username: str) -> tuple[TestClient, str]:
    client = TestClient(portal.app, raise_server_exceptions=False, follow_redirects=False)
    set_password(db, username)
    return client, sign_in(client, username)


def _count(db: Database) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count(InteractiveSession.id))) or 0,
            s.scalar(select(func.count(Job.id))) or 0,
        )


def test_a_member_starts_and_stops_a_session_from_the_page(
    db: Database, portal: TestClient, operator: Person, api: TestClient
) -> None:
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    project, _ = award(api, anna, operator)
    make_person(db, "bob", [(Role.APPLICANT, None)])
    browser, token = _browser(portal, db, "anna")
    page = browser.get("/sessions")
    assert page.status_code == 200 and 'href="/sessions"' in page.text
    assert f'<option value="{project}" selected>' in page.text
    assert "No sessions running" in page.text and 'http-equiv="refresh"' not in page.text

    bad = {"csrf_token": token, "action": "start", "project": project, "kind": "vnc",
           "gpus": "many", "time": "forever", "idle_timeout": "1h"}  # fmt: skip
    refused = browser.post("/sessions", data=bad)
    assert refused.status_code == 422
    assert re.search(r'data-field="gpus"[^>]*>[^<]*whole number', refused.text), refused.text
    assert 'value="forever"' in refused.text  # what was typed is kept
    assert _count(db) == (0, 0)
    refused = browser.post("/sessions", data={**bad, "gpus": "1"})
    assert refused.status_code == 422 and 'data-field="kind"' in refused.text
    assert 'data-field="time"' in refused.text and _count(db) == (0, 0)

    good = {**bad, "kind": "jupyter", "gpus": "1", "time": "2h"}
    started = browser.post("/sessions", data=good)
    assert started.status_code == 303 and started.headers["location"] == "/sessions?notice=started"
    page = browser.get("/sessions?notice=started")
    row = re.search(r'<tr data-session="(\d+)" data-state="starting">', page.text)
    assert row and 'http-equiv="refresh"' in page.text and "Session started" in page.text
    assert _count(db) == (1, 1)

    bob, bob_token = _browser(portal, db, "bob")
    stop = {"action": "stop", "id": row.group(1)}
    assert bob.post("/sessions", data={**stop, "csrf_token": bob_token}).status_code == 404
    done = browser.post("/sessions", data={**stop, "csrf_token": csrf_of(page.text)})
    assert done.status_code == 303
    page = browser.get("/sessions?all=true")
    assert re.search(rf'data-session="{row.group(1)}" data-state="(stopping|ended)"', page.text)
