"""The portal's audit page: admins see the log and current lockouts and can lift one."""

from __future__ import annotations

from fastapi.testclient import TestClient
from portal_support import csrf_of, set_password, sign_in

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.testing.people import make_person


def _login(portal: TestClient, username: str, password: str) -> int:
    token = csrf_of(portal.get("/login").text)
    form = {"csrf_token": token, "method": "password", "username": username, "password": password}
    return portal.post("/login", data={**form, "next": "/"}).status_code


def test_admins_see_failed_sign_ins_and_lift_a_lockout(db: Database, portal: TestClient) -> None:
    make_person(db, "anna", [(Role.APPLICANT, None)])
    make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
    set_password(db, "anna")
    set_password(db, "ada")
    codes = [_login(portal, "anna", "wrong password") for _ in range(11)]
    assert codes[-1] == 429 and codes[:10] == [401] * 10
    locked = portal.post(
        "/login",
        data={
            "csrf_token": csrf_of(portal.get("/login").text),
            "method": "password",
            "username": "anna",
            "password": "x",
            "next": "/",
        },
    )
    assert locked.status_code == 429 and "try again in" in locked.text
    assert "text/html" in locked.headers["content-type"]

    csrf = sign_in(portal, "ada")
    page = portal.get("/audit")
    assert page.status_code == 200
    assert "user:anna" in page.text.split('id="audit-h"')[0]  # in the lockout table
    assert portal.get("/audit?actor=anna&action=login").text.count("failed") == 10
    lifted = portal.post("/audit/unlock", data={"csrf_token": csrf, "key": "user:anna"})
    assert lifted.status_code == 303
    assert "user:anna" not in portal.get("/audit").text.split('id="audit-h"')[0]


def test_the_audit_page_is_for_admins_only(db: Database, portal: TestClient) -> None:
    make_person(db, "anna", [(Role.APPLICANT, None)])
    set_password(db, "anna")
    sign_in(portal, "anna")
    assert portal.get("/audit").status_code == 403
    assert 'href="/audit"' not in portal.get("/calls").text
