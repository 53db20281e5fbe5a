"""Self-service in a real browser (SQLite, one server): a person signs up, registers their
organisation with a linked enterprise (the SME verdict changes), a PI invites someone who signs
up from the link and joins, the PI removes them, and a token is made and revoked on /account.
Screenshots land in ``test-output/screenshots/self-service-*-{1280,390}.png``; axe-core checks
every page visited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_check import assert_accessible
from portal_support import PASSWORD, UI_STEP_MS, set_password

from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.jobs import backend_database
from aifactory.testing.people import make_person

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
WIDTHS = {1280: 860, 390: 844}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """anna, the PI of an awarded project, behind one server."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("self") / "data")
    with backend_database("sqlite", settings, lambda: pytest.fail("SQLite only")) as empty:
        db = prepare(settings, empty)
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        set_password(db, "anna")
        olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        with BackgroundServer(settings, db) as server:
            with httpx.Client(base_url=server.url) as http:
                code, _ = award(http, anna, olli)  # type: ignore[arg-type]
            yield {"url": server.url, "code": code}


def _shots(page: Any, name: str) -> None:
    """The page at each width (full height), then its accessibility check."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"self-service-{name}-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 860})
    assert_accessible(page, f"self-service-{name}")


def _context(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(UI_STEP_MS)
    return context.new_page()


def _sign_up(page: Any, username: str, name: str, email: str | None = None) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Full name").fill(name)
    if email is not None:
        page.get_by_label("E-mail").fill(email)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()


def _register_organisation(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name="Register an organisation").click()
    page.get_by_label("Legal name").fill("Bea Robotics SL")
    page.get_by_label("Type").select_option("sme")
    page.get_by_label("Country where it is established").select_option("ES")
    page.get_by_label("Staff headcount (annual work units)").fill("12")
    page.get_by_label("Annual turnover (EUR)").fill("1 200 000")
    page.get_by_label("Balance sheet total (EUR)").fill("900,000")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#sme-verdict")).to_have_text("Small enterprise")
    row = page.locator("#link-0")
    row.get_by_label("Name").fill("Holding SA")
    row.get_by_label("Share held (%)").fill("60")
    row.get_by_label("Staff headcount").fill("400")
    row.get_by_label("Turnover (EUR)").fill("80,000,000")
    page.get_by_role("button", name="Check").click()
    expect(page.locator("#sme-verdict")).to_have_text("Not an SME")
    expect(page.locator("#sme")).to_contain_text("Holding SA: linked (60 %)")
    _shots(page, "organisation")
    page.get_by_role("button", name="Register organisation").click()
    expect(page.locator(".notice")).to_have_text("Organisation saved.")
    expect(page.get_by_label("Annual turnover (EUR)")).to_have_value("1,200,000")


def test_sign_up_register_invite_join_remove_and_tokens(browser: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    url, code = site["url"], site["code"]
    bea = _context(browser)
    bea.goto(f"{url}/login")
    bea.get_by_role("link", name="Create one").click()
    _sign_up(bea, "bea", "Bea Ruiz", "bea@example.eu")
    expect(bea.locator(".who")).to_contain_text("Signed in as bea")
    expect(bea.locator(".notice")).to_contain_text("your account is ready")
    _register_organisation(bea)

    pi = _context(browser)
    pi.goto(f"{url}/login?next=/projects/{code}/members")
    pi.get_by_label("Username").fill("anna")
    pi.locator("#f-password").fill(PASSWORD)
    pi.get_by_role("button", name="Sign in", exact=True).click()
    pi.get_by_label("E-mail of the person").fill("carl@example.eu")
    pi.get_by_role("button", name="Create invitation link").click()
    link = pi.locator("#invite-url").inner_text().strip()
    expect(pi.locator("#pending")).to_contain_text("carl@example.eu")
    _shots(pi, "members")

    carl = _context(browser)
    carl.goto(link)
    expect(carl.get_by_role("heading", level=2)).to_contain_text("work")
    _shots(carl, "invitation")
    carl.get_by_role("link", name="Create an account").click()
    expect(carl.get_by_label("E-mail")).to_have_value("carl@example.eu")
    _shots(carl, "signup")
    _sign_up(carl, "carl", "Carl Berg")
    carl.get_by_role("button", name=f"Join project {code}").click()
    expect(carl.locator(".notice")).to_have_text("You joined the project.")

    pi.goto(f"{url}/projects/{code}/members")  # not a reload: that would post the form again
    expect(pi.locator("#members")).to_contain_text("carl (project member)")
    pi.get_by_role("button", name="Remove carl").click()
    expect(pi.locator(".notice")).to_have_text("Member removed.")
    expect(pi.locator("#members")).not_to_contain_text("carl")
    carl.goto(link)
    expect(carl.locator("#inv-status")).to_contain_text("already used")

    bea.goto(f"{url}/account")
    bea.locator("#f-name").fill("laptop CLI")
    bea.get_by_label("Valid for (days)").fill("30")
    bea.get_by_role("button", name="Create token").click()
    expect(bea.locator("#token-secret")).to_contain_text("aif_")
    _shots(bea, "account")
    bea.get_by_role("button", name="Revoke token laptop CLI").click()
    expect(bea.locator(".notice")).to_have_text("Token revoked.")
    expect(bea.locator("#tokens")).to_contain_text("revoked")
    expect(bea.locator("#token-secret")).to_have_count(0)
    for page in (bea, pi, carl):
        page.context.close()
