"""The portal in a real browser (Debian's chromium via Playwright) against a real server.

One server with the site agents running serves every test here, so jobs really run; there is one
such server on SQLite and one on PostgreSQL. Screenshots of the main pages land in
``test-output/screenshots/`` (the second backend's overwrite the first's). Without chromium the
tests are skipped with the reason, except under ``CI=true`` where a missing browser fails the
run. The wait for a job is on its progress (its state or log changing), not on a fixed time.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from axe_check import assert_accessible
from portal_support import PASSWORD, UI_STEP_MS, set_password

from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import member_of
from aifactory.testing.jobs import BACKENDS, backend_database, wait_for
from aifactory.testing.people import Person, make_person

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One server per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def site(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """A migrated federation, three people, and a server with the portal and agents."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("portal") / "data", local_gpus_per_site=4)
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        member_of(db, "anna", "Nordic Tokens Oy")
        set_password(db, "anna")
        make_person(db, "rita", [(Role.REVIEWER, None)])
        set_password(db, "rita")
        olli: Person = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        with BackgroundServer(settings, db, agents=True) as server:  # API, portal and agents
            yield {"url": server.url, "olli": olli, "db": db}


def _page(browser: Any, viewport: dict[str, int] = LAPTOP) -> Any:
    context = browser.new_context(viewport=viewport, accept_downloads=True)
    context.set_default_timeout(UI_STEP_MS)
    return context.new_page()


def _shot(page: Any, name: str) -> None:
    """A screenshot of the page, and its accessibility check (axe: no serious violation)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert_accessible(page, name)


def _wait_for_job(page: Any, state: str) -> None:
    """Wait while the page shows the job moving (its state or its log changing)."""
    shown = page.locator("#job-state")
    wait_for(
        lambda: shown.inner_text() == state,
        lambda: (shown.inner_text(), page.locator("#log-stdout").inner_text()),
        stall=60,
        step=0,
        between=lambda: page.wait_for_timeout(200),  # lets the page's own polling run
        what=f"job state {state!r} on the page",
    )


def _sign_in(page: Any, url: str, username: str, token: str | None = None) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/login")
    if token is None:
        page.get_by_label("Username").fill(username)
        page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
    else:
        page.get_by_role("textbox", name="API token", exact=True).fill(token)
        page.get_by_role("button", name="Sign in with token").click()
    expect(page.locator(".who")).to_contain_text(f"Signed in as {username}")


def test_overview_shows_the_map_and_the_computed_country_totals(
    browser: Any, site: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    for name, viewport in [("overview", LAPTOP), ("overview-phone", PHONE)]:
        page = _page(browser, viewport)
        page.goto(site["url"] + "/")
        expect(page.locator("#states-line")).to_have_text(
            "15 Member States + 2 participating states"
        )
        expect(page.locator("svg.europe-map path#FI")).to_have_class("country member_state host")
        expect(page.locator("svg.europe-map .marker")).to_have_count(7)
        expect(page.get_by_role("table", name="Factories, systems and partitions")).to_contain_text(
            "MareNostrum"
        )
        _shot(page, name)
        page.context.close()


def _apply(page: Any, url: str) -> None:
    """Live eligibility, the deadline, a refused size next to its field, then a submission."""
    from playwright.sync_api import expect

    page.goto(f"{url}/calls")
    _shot(page, "calls")
    page.set_viewport_size(PHONE)
    _shot(page, "calls-phone")
    page.set_viewport_size(LAPTOP)
    page.get_by_role("link", name="Apply to LUMI AIF Playground").click()
    organisation = page.get_by_label("Organisation")
    organisation.select_option("")
    expect(page.locator("#eligibility")).to_contain_text("Choose your organisation")
    organisation.select_option("Nordic Tokens Oy")
    expect(page.locator("#verdict")).to_have_text("Eligible: every rule passes.")
    expect(page.locator('#eligibility tr[data-rule="sme_definition"]')).to_contain_text("pass")
    expect(page.locator("#deadline")).to_have_text(re.compile(r"^\d{4}-\d{2}-\d{2}$"))
    page.get_by_label("Title").fill("Finnish LLM fine-tune")
    hours = page.locator('[name="resources.0.gpu_hours"]')  # the first system's row
    hours.fill("100000")
    page.get_by_label("Duration (months)").select_option("2")
    page.locator('[name="resources.0.partition"]').select_option("LUMI-AI/gpu")
    page.get_by_role("button", name="Submit proposal").click()
    error = page.locator('.field-error[data-field="resources"]')  # the total: the rows' section
    expect(error).to_contain_text("at most 5000 GPU-h")
    _shot(page, "apply-bad-input")
    hours.fill("1000")
    page.get_by_role("button", name="Submit proposal").click()
    expect(page.locator(".notice")).to_contain_text("Proposal submitted")
    expect(page.locator(".timeline")).to_contain_text("submitted → technical assessment")
    _shot(page, "proposal-submitted")


def _assess(browser: Any, url: str, olli: Person) -> None:
    from playwright.sync_api import expect

    page = _page(browser)
    _sign_in(page, url, "olli", token=olli.token)
    page.goto(f"{url}/operate")
    expect(page.get_by_role("heading", name="Finnish LLM fine-tune")).to_be_visible()
    _shot(page, "operate")
    page.get_by_role("button", name="Record assessment").click()
    expect(page.locator(".notice")).to_contain_text("Technical assessment recorded")
    page.context.close()


def _run_job(page: Any) -> None:
    from playwright.sync_api import expect

    code = (
        "import time; [print('step', i, flush=True) or time.sleep(0.3) for i in range(3)];"
        " print('all done')"
    )
    spec = (
        f'name: portal-job\ncommand: ["{sys.executable}", "-c", "{code}"]\n'
        "resources: {gpus_per_node: 1, time_limit: 60}\n"
    )
    page.get_by_label("Job spec (YAML)").fill("name: [broken")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator('.field-error[data-field="spec"]')).to_contain_text("not valid YAML")
    assert_accessible(page, "project-job-error")
    page.get_by_label("Job spec (YAML)").fill(spec)
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator(".notice")).to_contain_text("Job submitted")
    expect(page.locator("#chosen")).to_have_text("LUMI AIF/LUMI-AI/gpu")
    _wait_for_job(page, "completed")
    expect(page.locator("#log-stdout")).to_contain_text("step 2\nall done")
    _shot(page, "job")


def test_a_startup_applies_gets_an_award_runs_a_job_and_downloads_a_report(
    browser: Any, site: dict[str, Any]
) -> None:
    from playwright.sync_api import expect

    url, page = site["url"], _page(browser)
    _sign_in(page, url, "anna")
    _apply(page, url)
    _assess(browser, url, site["olli"])
    page.reload()
    expect(page.locator("#project")).to_contain_text("EHPC-AIF-")
    page.locator("#project a").click()
    _run_job(page)
    page.locator("#job-summary a").first.click()
    expect(page.locator("#jobs-body")).to_contain_text("completed")
    expect(page.locator("svg.chart polyline.used")).to_have_count(1)
    _shot(page, "project")
    page.set_viewport_size(PHONE)
    _shot(page, "project-phone")
    page.set_viewport_size(LAPTOP)
    page.goto(f"{url}/reports")
    page.get_by_label("Group by").select_option("user-country")
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("table", name=re.compile("^Usage by"))).to_contain_text("FI")
    _shot(page, "reports")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0] == "user-country,allocations,granted,used,reserved,remaining,label"
    assert text.splitlines()[1].startswith("FI,1,1000")


def test_the_wrong_role_gets_a_forbidden_page(browser: Any, site: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    page = _page(browser)
    _sign_in(page, site["url"], "rita")
    response = page.goto(site["url"] + "/operate")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.locator("main")).to_contain_text("needs one of the roles: factory_operator")
    _shot(page, "forbidden")
    page.goto(site["url"] + "/review")
    expect(page.get_by_role("heading", level=1)).to_have_text("Reviewer queue")
    assert_accessible(page, "review")
    page.context.close()
