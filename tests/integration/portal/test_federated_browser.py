"""Federated sign-in end to end against a real OpenID Provider (``oidc-provider``, see
``oidc_op.py``) and a real server: once with httpx filling the provider's forms, once in Chromium.

One provider and one server (SQLite) serve the module. The provider's claims for a login name are
changed between sign-ins, as a home organisation would change a person's entitlements.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from oidc_op import CLIENT_ID, CLIENT_SECRET, RunningOp, running_op
from portal_support import UI_STEP_MS
from sqlalchemy import select

from aifactory.db.engine import Database
from aifactory.db.models import AuditEvent, OidcIdentity, Organisation, User
from aifactory.domain.enums import OrganisationType, Role
from aifactory.server import BackgroundServer, free_port
from aifactory.services import identity
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.people import Person, make_person

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
WIDTHS = {1280: {"width": 1280, "height": 860}, 390: {"width": 390, "height": 844}}
REVIEWERS = "urn:geant:eurohpc.eu:group:reviewers#login.myaccessid.org"
ORG = "Uni Example"
FORM = re.compile(r'<form[^>]*action="([^"]+)"[^>]*method="post"', re.I)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', re.I)
pytestmark = pytest.mark.slow


@dataclass
class Site:
    url: str
    op: RunningOp
    db: Database
    admin: Person


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A federation whose portal signs in through the provider; "Uni Example" is uni.example."""
    tmp = tmp_path_factory.mktemp("oidc")
    op_port = free_port()
    settings = Settings(
        data_dir=tmp / "data",
        run_agents=False,
        oidc_issuer=f"http://127.0.0.1:{op_port}",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_scopes="openid email profile eduperson_entitlement schac_home_organization",
        oidc_label="MyAccessID",
    )
    db = prepare(settings)
    with db.session() as s:
        identity.create_organisation(s, ORG, OrganisationType.ACADEMIA, "FI")
        s.scalars(
            select(Organisation).where(Organisation.name == ORG)
        ).one().home_domain = "uni.example"
    admin = make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
    server = BackgroundServer(settings, db)
    with running_op(op_port, server.url + "/auth/callback", tmp / "claims.json") as op, server:
        yield Site(server.url, op, db, admin)
    db.dispose()


def _follow(client: httpx.Client, response: httpx.Response, site: Site, login: str) -> Any:
    """Follow redirects and fill the provider's forms (login, consent) until the portal answers
    something other than a redirect to the provider."""
    for _ in range(20):
        at_op = str(response.url).startswith(site.op.issuer)
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if not at_op and not target.startswith(site.op.issuer):
                return response  # the portal's own answer (after the callback)
            response = client.get(target)
        elif at_op and response.status_code == 200 and FORM.search(response.text):
            response = _submit(client, response, login)
        else:
            return response
    raise AssertionError("the sign-in did not come back to the portal")


def _submit(client: httpx.Client, page: httpx.Response, login: str) -> httpx.Response:
    match = FORM.search(page.text)
    assert match is not None
    data = dict(HIDDEN.findall(page.text))
    if 'name="login"' in page.text:
        data.update(login=login, password="any password")
    return client.post(urljoin(str(page.url), match.group(1)), data=data)


def _sign_in(site: Site, login: str, next_url: str = "/projects") -> tuple[httpx.Client, Any]:
    """A fresh browser-like client through the whole flow; returns it and the last answer."""
    client = httpx.Client(follow_redirects=False, timeout=30)
    first = client.get(f"{site.url}/login/federated", params={"next": next_url})
    assert first.status_code == 303
    assert first.headers["location"].startswith(site.op.issuer + "/auth?")
    return client, _follow(client, first, site, login)


def _user(site: Site, username: str) -> dict[str, Any]:
    with site.db.session() as s:
        user = s.scalars(select(User).where(User.username == username)).one()
        view = identity.user_view(s, user)
        links = s.scalars(select(OidcIdentity).where(OidcIdentity.user_id == user.id)).all()
        return {
            "id": user.id,
            "email": user.email,
            "roles": sorted(r.role for r in view.roles),
            "organisations": view.organisations,
            "subjects": [(link.issuer, link.subject) for link in links],
        }


def _rule(site: Site, value: str = REVIEWERS) -> int:
    body = {"claim": "eduperson_entitlement", "value": value, "role": "reviewer"}
    r = httpx.post(f"{site.url}/api/v1/admin/claim-rules", json=body, headers=site.admin.headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_first_sign_in_creates_the_user_and_later_ones_find_them(site: Site) -> None:
    site.op.set_claims(
        {"rev-alice": {"schac_home_organization": "uni.example", "eduperson_entitlement": []}}
    )
    client, answer = _sign_in(site, "rev-alice")
    assert answer.status_code == 303 and answer.headers["location"] == "/projects"
    assert client.get(f"{site.url}/projects").status_code == 200  # signed in
    first = _user(site, "rev-alice")
    assert first["email"] == "rev-alice@uni.example"
    assert first["roles"] == ["applicant"]
    assert first["organisations"] == [ORG]
    assert first["subjects"] == [(site.op.issuer, "rev-alice")]
    _, again = _sign_in(site, "rev-alice")
    assert again.status_code == 303
    assert _user(site, "rev-alice")["id"] == first["id"]
    with site.db.session() as s:
        logins = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "login", AuditEvent.actor == "rev-alice")
        ).all()
    assert [e.detail.get("method") for e in logins] == ["oidc", "oidc"]


def test_claim_rules_grant_roles_and_take_them_away(site: Site) -> None:
    rule = _rule(site)
    claims = {"schac_home_organization": "uni.example", "eduperson_entitlement": [REVIEWERS]}
    site.op.set_claims({"rev-bob": claims})
    client, answer = _sign_in(site, "rev-bob", "/review")
    assert answer.headers["location"] == "/review"
    assert client.get(f"{site.url}/review").status_code == 200  # the reviewer's page
    assert _user(site, "rev-bob")["roles"] == ["applicant", "reviewer"]
    with site.db.session() as s:  # granted by hand: the rules leave it alone
        identity.grant_role(s, "rev-bob", Role.PI, None)
    site.op.set_claims({"rev-bob": {"eduperson_entitlement": ["urn:other"]}})
    client, _ = _sign_in(site, "rev-bob")
    assert _user(site, "rev-bob")["roles"] == ["applicant", "pi"]
    assert client.get(f"{site.url}/review").status_code == 403
    gone = httpx.delete(f"{site.url}/api/v1/admin/claim-rules/{rule}", headers=site.admin.headers)
    assert gone.status_code == 200


def test_reused_and_forged_states_are_refused(site: Site) -> None:
    site.op.set_claims({})
    client, answer = _sign_in(site, "carol")
    callback = str(answer.url)
    assert urlsplit(callback).path == "/auth/callback"
    replay = client.get(callback)
    assert replay.status_code == 400
    assert "unknown or was already used" in replay.text
    forged = client.get(f"{site.url}/auth/callback", params={"state": "forged", "code": "x"})
    assert forged.status_code == 400
    assert "unknown or was already used" in forged.text


def test_a_code_the_provider_refuses_shows_why(site: Site) -> None:
    client = httpx.Client(follow_redirects=False, timeout=30)
    start = client.get(f"{site.url}/login/federated")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = client.get(f"{site.url}/auth/callback", params={"state": state, "code": "not-a-code"})
    assert r.status_code == 401
    assert "refused the sign-in code (invalid_grant)" in r.text
    other = httpx.Client(follow_redirects=False, timeout=30)  # a state started elsewhere
    start = client.get(f"{site.url}/login/federated")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    r = other.get(f"{site.url}/auth/callback", params={"state": state, "code": "x"})
    assert r.status_code == 400 and "started in another browser" in r.text


def test_a_disabled_account_is_refused(site: Site) -> None:
    site.op.set_claims({})
    _sign_in(site, "erik")
    with site.db.session() as s:
        s.scalars(select(User).where(User.username == "erik")).one().is_active = False
    client, answer = _sign_in(site, "erik")
    assert answer.status_code == 403
    assert "this account is disabled" in answer.text
    assert client.get(f"{site.url}/projects").status_code == 303  # not signed in: to /login


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_signing_in_with_myaccessid_in_a_browser(site: Site, browser: Any, width: int) -> None:
    from axe_check import assert_accessible
    from playwright.sync_api import expect

    site.op.set_claims({f"dana{width}": {"schac_home_organization": "uni.example"}})
    context = browser.new_context(viewport=WIDTHS[width])
    context.set_default_timeout(UI_STEP_MS)
    page = context.new_page()
    page.goto(site.url + "/auth/callback?state=forged&code=x")  # a forged or replayed link
    expect(page.get_by_role("alert")).to_contain_text("unknown or was already used")
    _shot(page, f"signin-refused-{width}")
    page.goto(site.url + "/login")
    button = page.get_by_role("link", name="Sign in with MyAccessID")
    expect(button).to_be_visible()
    _shot(page, f"signin-login-{width}")
    assert_accessible(page, f"signin-login-{width}")
    button.click()
    page.locator("input[name=login]").fill(f"dana{width}")
    page.locator("input[name=password]").fill("any password")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(site.url + "/")
    expect(page.get_by_text(f"dana{width}").first).to_be_visible()
    _shot(page, f"signin-landing-{width}")
    assert_accessible(page, f"signin-landing-{width}")
    assert _user(site, f"dana{width}")["organisations"] == [ORG]
    context.close()


def test_admins_keep_the_rules_with_the_cli(site: Site, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aifactory.cli.main import app

    env = {"AIF_URL": site.url, "AIF_TOKEN": site.admin.token, "AIF_CONFIG_DIR": str(tmp_path)}

    def aif(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, ["admin", "claim-rules", *args], env=env)
        assert result.exit_code == code, result.output
        return result.output

    added = aif(
        "add",
        "eduperson_entitlement",
        "urn:geant:ops#*",
        "factory_operator",
        "--factory",
        "LUMI AIF",
        "--json",
    )
    rule = json.loads(added)
    assert (rule["role"], rule["factory"]) == ("factory_operator", "LUMI AIF")
    assert "urn:geant:ops#*" in aif("list")
    refused = aif("add", "eduperson_entitlement", "urn:x", "factory_operator", code=1)
    assert "factory_operator needs a factory" in refused
    aif("remove", str(rule["id"]))
    assert all(r["id"] != rule["id"] for r in json.loads(aif("list", "--json")))
