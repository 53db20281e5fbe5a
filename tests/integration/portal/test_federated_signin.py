"""Federated sign-in over HTTP without a provider: the button, failures shown on the sign-in page
(never a 500), the claim-rule and home-domain API. The whole flow against a real provider is in
``test_federated_browser.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import AuditEvent, Organisation, User
from aifactory.server import free_port
from aifactory.services import federated
from aifactory.settings import Settings
from aifactory.testing.access import member_of
from aifactory.testing.people import Person

RULES = "/api/v1/admin/claim-rules"
ISSUER = "https://proxy.myaccessid.org"
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
UNKNOWN_SIGN_INS = [
    {"state": "made-up", "code": "abc"},
    {"code": "abc"},
    {"state": "x", "error": "access_denied"},
]
#: A rule's fields changed to something refused, the field named and the rule broken.
BAD_RULES = [
    ({"role": "factory_operator"}, "factory", "operator_scope"),
    ({"factory": "LUMI AIF"}, "factory", "operator_scope"),
    ({"role": "factory_operator", "factory": "Nowhere"}, "factory", "known_factory"),
    ({"value": "*"}, "value", "not_everyone"),
    ({"claim": "has space"}, "claim", "string_pattern_mismatch"),
    ({"role": "federation_admin"}, "role", "not_federation_admin"),  # admins are made by hand
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A provider configured on a port where nothing listens: it is down."""
    return Settings(
        data_dir=tmp_path / "data",
        oidc_issuer=f"http://127.0.0.1:{free_port()}",
        oidc_client_id="aif",
        oidc_client_secret="secret",
        oidc_label="MyAccessID",
    )


def _roles(user: User) -> list[str]:
    return sorted(g.role for g in user.roles)


def _failed_logins(db: Database) -> list[str]:
    with db.session() as s:
        rows = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "login", AuditEvent.outcome == "failed")
        )
        return [str(e.detail.get("reason")) for e in rows if e.detail.get("method") == "oidc"]


def test_the_sign_in_page_offers_the_provider_and_shows_each_failure(
    portal: TestClient, db: Database, tmp_path: Path
) -> None:
    page = portal.get("/login?next=/projects")
    assert "Sign in with MyAccessID" in page.text
    assert 'href="/login/federated?next=/projects"' in page.text
    down = portal.get("/login/federated?next=/projects")  # nothing listens on its port
    assert down.status_code == 502
    assert "the sign-in provider is unreachable (discovery)" in down.text
    assert 'name="username"' in down.text  # the password form is still there
    for query in UNKNOWN_SIGN_INS:
        r = portal.get("/auth/callback", params=query)
        assert r.status_code == 400, query
        assert "this sign-in is unknown or was already used; start again" in r.text
    assert _failed_logins(db) == ["the sign-in provider is unreachable (discovery)"] + [
        "invalid state: this sign-in is unknown or was already used; start again"
    ] * len(UNKNOWN_SIGN_INS)
    # the same portal with no provider configured (settings are the app's, read per request)
    portal.app.state.settings = Settings(data_dir=tmp_path / "plain")  # type: ignore[attr-defined]
    assert "/login/federated" not in portal.get("/login").text
    missing = portal.get("/login/federated")
    assert missing.status_code == 404
    assert "not configured" in missing.text


def test_admins_manage_claim_rules_that_sign_ins_apply(
    api: TestClient, admin: Person, db: Database
) -> None:
    body = {"claim": "eduperson_entitlement", "value": "urn:x:reviewers#*", "role": "reviewer"}
    made = api.post(RULES, json=body, headers=admin.headers)
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == "ada"
    assert api.post(RULES, json=body, headers=admin.headers).status_code == 409
    op = {**body, "role": "factory_operator", "factory": "LUMI AIF"}
    assert api.post(RULES, json=op, headers=admin.headers).json()["factory"] == "LUMI AIF"
    listed = api.get(RULES, headers=admin.headers).json()
    assert [(r["role"], r["factory"]) for r in listed] == [
        ("reviewer", None),
        ("factory_operator", "LUMI AIF"),
    ]
    with db.session() as s:  # a sign-in's verified claims, as the provider would send them
        claims = {"sub": "u-1", "email": "Eve.Example@uni.example", "name": "Eve"}
        entitled = {**claims, "eduperson_entitlement": ["urn:x:reviewers#a", "urn:y"]}
        eve = federated.provision(s, ISSUER, entitled, NOW)
        assert eve.username == "eve.example"
        assert _roles(eve) == ["applicant", "factory_operator", "reviewer"]
        assert _roles(federated.provision(s, ISSUER, claims, NOW)) == ["applicant"]
        twin = federated.provision(s, ISSUER, {**entitled, "sub": "u-2"}, NOW)
        assert twin.username == "eve.example-2" and len(twin.roles) == 3
    gone = api.delete(f"{RULES}/{made.json()['id']}", headers=admin.headers)
    assert gone.status_code == 200
    assert api.delete(f"{RULES}/{made.json()['id']}", headers=admin.headers).status_code == 404
    for change, field, rule in BAD_RULES:
        bad = {**body, "value": "urn:x", **change}
        r = api.post(RULES, json=bad, headers=admin.headers)
        assert r.status_code == 422, r.text
        details = r.json()["error"]["details"]
        assert any(d["field"].endswith(field) and d["rule"] == rule for d in details), details


def test_admins_set_an_organisations_home_domain(
    api: TestClient, admin: Person, db: Database
) -> None:
    member_of(db, "anna", "Nordic Tokens Oy")
    member_of(db, "bert", "Other Org")
    with db.session() as s:
        ids = dict(s.execute(select(Organisation.name, Organisation.id)).all())
    url = "/api/v1/admin/organisations/{}/home-domain"
    r = api.put(
        url.format(ids["Nordic Tokens Oy"]),
        json={"home_domain": "Tokens.FI"},
        headers=admin.headers,
    )
    assert r.json() == {"organisation": "Nordic Tokens Oy", "home_domain": "tokens.fi"}
    taken = api.put(
        url.format(ids["Other Org"]), json={"home_domain": "tokens.fi"}, headers=admin.headers
    )
    assert taken.status_code == 409
    bad = api.put(
        url.format(ids["Other Org"]), json={"home_domain": "no spaces"}, headers=admin.headers
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["field"].endswith("home_domain")
    cleared = api.put(
        url.format(ids["Nordic Tokens Oy"]), json={"home_domain": None}, headers=admin.headers
    )
    assert cleared.json()["home_domain"] is None
    assert api.put(url.format(2**31 - 2), json={}, headers=admin.headers).status_code == 404
