"""Self-service pages over HTTP: sign-up, organisation registration, invitations, tokens."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from portal_support import PASSWORD, csrf_of, set_password, sign_in

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.server import build_app
from aifactory.settings import Settings
from aifactory.testing.access import at, award, member_of, set_clock
from aifactory.testing.people import make_person

# The pages call the services the API tests run on both backends; SQLite is enough here.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])
NOW = at("2026-11-25T09:00")


def _signup(portal: TestClient, **fields: str) -> httpx.Response:
    token = csrf_of(portal.get("/signup").text)
    return portal.post("/signup", data={"csrf_token": token, "next": "/", **fields})


def test_sign_up_shows_every_error_at_once_then_signs_in(db: Database, portal: TestClient) -> None:
    member_of(db, "anna", "Nordic Tokens Oy")
    bad = _signup(portal, username="anna", email="nope", full_name="", password="short")
    assert bad.status_code == 422
    html = bad.text
    for field, message in [
        ("username", "&#39;anna&#39; is taken"),
        ("email", "give an e-mail address"),
        ("full_name", "give your name"),
        ("password", "at least 10 characters"),
    ]:
        assert re.search(rf'data-field="{field}">[^<]*{message}', html), field
    assert 'value="nope"' in html  # input kept
    good = _signup(
        portal, username="bea", email="bea@x.eu", full_name="Bea Ruiz", password=PASSWORD
    )
    assert good.headers["location"] == "/account?notice=welcome"
    account = portal.get("/account")
    assert "Signed in as <strong>bea</strong>" in account.text
    assert "applicant" in account.text


def test_sign_up_can_be_turned_off_and_refusals_are_throttled(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "off", self_signup=False)
    with TestClient(build_app(settings, db), follow_redirects=False) as client:
        assert client.get("/signup").status_code == 403
        assert "Create one" not in client.get("/login").text
    settings = Settings(data_dir=tmp_path / "strict", auth_address_failures=2)
    with TestClient(build_app(settings, db), follow_redirects=False) as client:
        refused = [_signup(client, username="x").status_code for _ in range(2)]
        good = {"username": "dora", "email": "d@x.eu", "full_name": "Dora", "password": PASSWORD}
        locked = _signup(client, **good)
        assert refused == [422, 422]
        assert locked.status_code == 429
        assert "try again in" in locked.text


def test_one_address_creates_a_few_accounts_an_hour(db: Database, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "few", signup_per_address=2)
    with TestClient(build_app(settings, db), follow_redirects=False) as client:
        set_clock(client, NOW)

        def new_account(name: str) -> httpx.Response:
            client.cookies.clear()  # signed out again, as the next person at this address
            fields = {"email": f"{name}@x.eu", "full_name": name.title(), "password": PASSWORD}
            return _signup(client, username=name, **fields)

        made = [new_account(name).status_code for name in ("dora", "emil")]
        refused = new_account("fred")
        assert made == [303, 303]
        assert refused.status_code == 429
        assert "too many accounts were created from this address" in refused.text
        assert "try again in 60 min" in refused.text
        set_clock(client, NOW + timedelta(hours=1, seconds=1))
        assert new_account("fred").status_code == 303


def test_organisation_form_reads_numbers_as_written_and_shows_the_sme_verdict(
    db: Database, portal: TestClient
) -> None:
    make_person(db, "bea", [(Role.APPLICANT, None)])
    set_password(db, "bea")
    token = sign_in(portal, "bea")
    form = {
        "csrf_token": token,
        "name": "Bea Robotics SL",
        "type": "sme",
        "country_code": "ES",
        "staff_headcount": "8",
        "annual_turnover_eur": "1 200 000",
        "balance_sheet_eur": "900,000",
    }
    checked = portal.post("/organisations/new", data={**form, "action": "check"})
    assert "Micro enterprise" in checked.text
    linked = {
        "enterprise_links.0.name": "Holding SA",
        "enterprise_links.0.share": "60 %",
        "enterprise_links.0.staff": "400",
        "enterprise_links.0.turnover_eur": "80,000,000",
    }
    checked = portal.post("/organisations/new", data={**form, **linked, "action": "check"})
    assert "Not an SME" in checked.text and "Holding SA: linked (60 %)" in checked.text
    bad = {
        **form,
        "name": "",
        "country_code": "ZZ",
        "staff_headcount": "twelve",
        "enterprise_links.0.share": "160",
        **{
            f"enterprise_links.{i}.{f}": v
            for i in (1, 2)
            for f, v in (("name", "Twice"), ("share", "30"))
        },
    }
    refused = portal.post("/organisations/new", data={**bad, "action": "save"})
    assert refused.status_code == 422
    for field in (
        "name",
        "country_code",
        "staff_headcount",
        "enterprise_links.0.share",
        "enterprise_links.0.name",
        "enterprise_links.2.name",
    ):
        assert f'data-field="{field}"' in refused.text, field
    assert 'value="twelve"' in refused.text
    saved = portal.post("/organisations/new", data={**form, **linked, "action": "save"})
    assert saved.status_code == 303
    page = portal.get(saved.headers["location"])
    assert 'value="1,200,000"' in page.text and 'value="Holding SA"' in page.text
    assert "Bea Robotics SL" in portal.get("/account").text


def test_invitation_link_tokens_and_members_pages(db: Database, portal: TestClient) -> None:
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    set_password(db, "anna")
    code, _ = award(portal, anna, olli)
    token = sign_in(portal, "anna")
    made = portal.post(
        f"/projects/{code}/invitations", data={"csrf_token": token, "email": "c@x.eu"}
    )
    assert made.status_code == 201
    link = re.search(r'id="invite-url">([^<]+)<', made.text)
    assert link is not None
    path = "/invitations/" + link.group(1).rsplit("/", 1)[1]
    bad = portal.post(f"/projects/{code}/invitations", data={"csrf_token": token, "email": "x"})
    assert bad.status_code == 422 and 'data-field="email"' in bad.text
    other = portal.post(
        f"/projects/{code}/invitations", data={"csrf_token": token, "email": "d@x.eu"}
    )
    revoke = re.search(r'action="(/projects/[^"]+/revoke)"', other.text)
    assert revoke is not None
    assert portal.post(revoke.group(1), data={"csrf_token": token}).status_code == 303
    assert re.search(r"d@x.eu: <span[^>]*>revoked", portal.get(f"/projects/{code}/members").text)

    minted = portal.post(
        "/account/tokens", data={"csrf_token": token, "name": "cli", "ttl_days": "30"}
    )
    secret = re.search(r'id="token-secret">(aif_[^<]+)<', minted.text)
    assert minted.status_code == 201 and secret is not None
    assert portal.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}
    ).is_success
    token_id = re.search(r'data-token="(\d+)"', minted.text)
    assert token_id is not None
    assert secret.group(1) not in portal.get("/account").text  # shown once
    portal.post(f"/account/tokens/{token_id.group(1)}/revoke", data={"csrf_token": token})
    assert (
        portal.get("/api/v1/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code
        == 401
    )

    portal.post("/logout", data={"csrf_token": token})
    signed_out = portal.get(path)
    assert "Create an account" in signed_out.text and "c%40x.eu" in signed_out.text
    make_person(db, "carl", [(Role.APPLICANT, None)])
    set_password(db, "carl")
    token = sign_in(portal, "carl")
    joined = portal.post(f"{path}/accept", data={"csrf_token": token})
    assert joined.headers["location"] == f"/projects/{code}?notice=joined"
    used = portal.get(path)
    assert used.status_code == 410 and "already used" in used.text
    assert portal.get("/invitations/inv_nothing").status_code == 404
