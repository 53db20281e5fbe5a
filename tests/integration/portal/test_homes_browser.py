"""Role homes in a real browser (SQLite, one server): each person signs in, sees their home at
1280 and 390 px wide, and follows a link to where the next step is taken. Screenshots land in
``test-output/screenshots/homes-*.png``; axe-core checks every page visited."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from axe_check import assert_accessible
from fastapi.testclient import TestClient
from homes_support import VIEW_AT, populate
from portal_support import PASSWORD, UI_STEP_MS

from aifactory.server import BackgroundServer, build_app
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.jobs import backend_database

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
WIDTHS = {1280: 860, 390: 844}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The homes federation (``homes_support``) behind one server whose clock reads 20 Dec."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("homes") / "data")
    with backend_database("sqlite", settings, lambda: pytest.fail("SQLite only")) as empty:
        db = prepare(settings, empty)
        with TestClient(build_app(settings, db)) as api:
            made = populate(api, db)
        with BackgroundServer(settings, db) as server:
            server.server.config.app.state.clock = lambda: VIEW_AT
            yield {"url": server.url, **made}


def _shots(page: Any, name: str) -> None:
    """The page at each width (full height), then its accessibility check."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, height in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SHOTS / f"homes-{name}-{width}.png"), full_page=True)
    assert_accessible(page, f"homes-{name}")


def _signed_in(browser: Any, url: str, username: str) -> Any:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(UI_STEP_MS)
    page = context.new_page()
    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(username)
    page.locator("#f-password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator(".who")).to_contain_text(f"Signed in as {username}")
    page.goto(f"{url}/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Home")
    return page


def test_each_person_finds_their_next_step_at_home(browser: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    url, code = site["url"], site["code"]
    page = _signed_in(browser, url, "anna")
    expect(page.locator("#home-applicant")).to_contain_text("waiting for technical assessment")
    chart = page.locator("#home-member svg.chart")
    expect(chart).to_have_attribute("data-x-start", site["allocation"]["start_date"])
    _shots(page, "applicant-member")
    page.get_by_role("link", name=f"awarded: project {code}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Project {code}")
    expect(page.locator("svg.chart.fit")).to_have_attribute(
        "data-x-end", site["allocation"]["end_date"]
    )
    _shots(page, "project")
    page.context.close()

    page = _signed_in(browser, url, "rita")
    expect(page.locator("#home-reviewer .late")).to_contain_text("overdue by")
    _shots(page, "reviewer")
    page.get_by_role("link", name=f"Score proposal #{site['review']}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reviewer queue")
    page.context.close()

    page = _signed_in(browser, url, "olli")
    expect(page.locator("#home-operator")).to_contain_text("past the service-level deadline")
    _shots(page, "operator")
    page.get_by_role("link", name="Open the operator queue").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Operator queue")
    page.context.close()

    page = _signed_in(browser, url, "ada")
    expect(page.locator("#home-admin svg.chart")).to_be_visible()
    _shots(page, "admin")
    page.get_by_role("link", name="Reports").last.click()
    page.get_by_label("Over time, stacked by").select_option("funding")
    page.get_by_role("button", name="Show report").click()
    expect(page.locator("#series-table")).to_be_attached()
    _shots(page, "reports")
    page.context.close()
