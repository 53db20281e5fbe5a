"""The full apply form and the decisions page in Chromium, against one real server (SQLite).

An applicant fills the Fast Lane form with mistakes, sees every error beside its field with
what she typed kept, adds a team row without JavaScript's help, fixes the form, attaches a PDF
and submits; an admin reads the decisions page. Screenshots at 1280 and 390 px land in
``test-output/screenshots/proposals-*.png``; every page visited passes the axe check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_check import assert_accessible
from portal_support import PASSWORD, UI_STEP_MS, set_password

from aifactory.domain.enums import OrganisationType, Role
from aifactory.domain.proposal_sections import ETHICS_QUESTIONS
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import member_of
from aifactory.testing.jobs import backend_database
from aifactory.testing.people import make_person
from aifactory.testing.proposals import SECTIONS, pdf_bytes

SHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"
WIDTHS = {1280: {"width": 1280, "height": 900}, 390: {"width": 390, "height": 844}}
TRAIN = "MareNostrum 5 AI/llm-train"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server without agents; an applicant, an admin, and a proposal in peer review."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("proposals") / "data")
    with backend_database("sqlite", settings, lambda: None) as empty:
        db = prepare(settings, empty)
        member_of(db, "anna", "Nordic Tokens Oy")
        set_password(db, "anna")
        boss = member_of(db, "boss", "Big Motors AG", OrganisationType.LARGE_ENTERPRISE, "DE")
        admin = make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])
        set_password(db, "ada")
        operator = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        rita = make_person(db, "rita", [(Role.REVIEWER, None)])
        make_person(db, "rolf", [(Role.REVIEWER, None)])
        with BackgroundServer(settings, db, agents=False) as server:
            api = httpx.Client(base_url=server.url + "/api/v1", timeout=30)
            body = {
                "call_id": "lumi-aif-ls",
                "title": "Driving model",
                "organisation": "Big Motors AG",
                "research_kind": "commercial",
                "duration_months": 6,
                "pi_contract_end": "2029-12-31",
                "resources": [
                    {"partition": "LUMI-AI/gpu", "gpu_hours": 120000, "justification": "runs"}
                ],
                "sections": SECTIONS,
            }
            pid = _ok(api.post("/proposals", headers=boss.headers, json=body))["id"]
            _ok(api.post(f"/proposals/{pid}/submit", headers=boss.headers))
            feasible = {"feasible": True}
            _ok(api.post(f"/proposals/{pid}/assessment", headers=operator.headers, json=feasible))
            for name in ("rita", "rolf"):
                who = {"username": name}
                _ok(api.post(f"/proposals/{pid}/reviewers", headers=admin.headers, json=who))
            scores = {"scores": {"excellence": 4, "impact": 4.5, "feasibility": 5}}
            _ok(api.post(f"/proposals/{pid}/reviews", headers=rita.headers, json=scores))
            yield {"url": server.url, "reviewed": pid}
            api.close()


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def _page(browser: Any, width: int) -> Any:
    context = browser.new_context(viewport=WIDTHS[width], accept_downloads=True)
    context.set_default_timeout(UI_STEP_MS)
    return context.new_page()


def _shot(page: Any, name: str, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"proposals-{name}-{width}.png"), full_page=True)
    assert_accessible(page, f"proposals-{name}-{width}")


def _sign_in(page: Any, url: str, username: str) -> None:
    from playwright.sync_api import expect

    page.goto(f"{url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator(".who")).to_contain_text(f"Signed in as {username}")


def _named(page: Any, name: str) -> Any:
    return page.locator(f'[name="{name}"]')


def _with_mistakes(page: Any) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Duration (months)").select_option("3")
    _named(page, "resources.0.partition").select_option(TRAIN)
    _named(page, "resources.0.gpu_hours").fill("12,5")
    _named(page, "technical.method").fill("A 1B decoder-only transformer")
    page.locator("#f-ethics-dual_use").check()  # "yes", without an explanation
    page.get_by_role("button", name="Submit proposal").click()
    for name, words in {
        "title": "give the proposal a title",
        "resources.0.gpu_hours": "not a valid number",
        "resources.0.justification": "say why you need this much",
        "team": "name at least one team member",
        "technical.scaling": "show how the code scales",
        "ethics.dual_use": "explain how it is handled",
    }.items():
        expect(page.locator(f'.field-error[data-field="{name}"]')).to_contain_text(words)
    expect(_named(page, "resources.0.gpu_hours")).to_have_value("12,5")
    expect(_named(page, "resources.0.gpu_hours")).to_have_attribute("aria-invalid", "true")
    expect(_named(page, "technical.method")).to_have_value("A 1B decoder-only transformer")
    expect(page.locator("#error-summary")).to_be_visible()


def _fixed(page: Any, pdf: Path) -> None:
    from playwright.sync_api import expect

    page.get_by_label("Title").fill("Finnish LLM")
    _named(page, "resources.0.gpu_hours").fill("12 500")
    _named(page, "resources.0.justification").fill("three pre-training runs")
    page.get_by_role("button", name="Add another member").click()
    expect(_named(page, "team.2.name")).to_be_visible()
    expect(_named(page, "resources.0.gpu_hours")).to_have_value("12 500")
    for key, value in SECTIONS["team"][0].items():
        _named(page, f"team.0.{key}").fill(value)
    for group in ("technical", "data"):
        for key, value in SECTIONS[group].items():
            if isinstance(value, str):
                _named(page, f"{group}.{key}").fill(value)
    page.locator("#f-data-personal_data").check()  # yes ...
    _named(page, "data.personal_data_handling").fill("pseudonymised before training")
    for q in ETHICS_QUESTIONS:
        page.locator(f'[name="ethics.{q}"][value="no"]').check()
    page.get_by_label("PDF files (CVs, a technical annex)").set_input_files(str(pdf))
    page.get_by_role("button", name="Submit proposal").click()
    expect(page.locator(".notice")).to_contain_text("Proposal submitted")


def test_an_applicant_fills_the_full_form_and_an_admin_reads_the_decisions(
    browser: Any, site: dict[str, Any], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    url = site["url"]
    page = _page(browser, 1280)
    _sign_in(page, url, "anna")
    page.goto(f"{url}/calls?mode=FL")
    page.get_by_role("link", name="Apply to BSC AIF Fast Lane").click()
    expect(page.get_by_role("heading", name="Apply: BSC AIF Fast Lane")).to_be_visible()
    _shot(page, "apply", 1280)
    _with_mistakes(page)
    _shot(page, "apply-errors", 1280)
    pdf = tmp_path / "cv-aino.pdf"
    pdf.write_bytes(pdf_bytes("Aino Virtanen, CV"))
    _fixed(page, pdf)
    expect(page.locator(".sections-resources")).to_contain_text("12,500")
    expect(page.get_by_role("link", name="cv-aino.pdf")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="cv-aino.pdf").click()
    assert Path(download.value.path()).read_bytes() == pdf.read_bytes()
    _shot(page, "proposal", 1280)
    phone = _page(browser, 390)
    _sign_in(phone, url, "anna")
    phone.goto(f"{url}/calls/bsc-aif-fl/apply")
    phone.get_by_role("button", name="Submit proposal").click()
    expect(phone.locator('.field-error[data-field="title"]')).to_be_visible()
    _shot(phone, "apply-errors", 390)
    phone.goto(page.url)
    _shot(phone, "proposal", 390)
    phone.context.close()
    page.context.close()
    for width in WIDTHS:
        admin = _page(browser, width)
        _sign_in(admin, url, "ada")
        admin.get_by_role("navigation", name="Main").get_by_role("link", name="Decisions").click()
        card = admin.locator(f"#proposal-{site['reviewed']}")
        expect(card.locator(".reviews-in")).to_have_text("1 of 2 reviews in")
        expect(card.locator(".decidable")).to_contain_text("Not decidable yet")
        expect(card.locator("tfoot")).to_contain_text("4.50")
        _shot(admin, "decisions", width)
        admin.context.close()
