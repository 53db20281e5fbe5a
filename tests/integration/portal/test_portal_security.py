"""Security headers, caching and error pages of the web app (portal, static files and API).

Over HTTP on SQLite and PostgreSQL: the headers of every kind of response, ``no-store`` on
everything that may carry a user's data, HTML error pages outside the API and JSON inside it.
In a real browser (chromium): no page the portal shows breaks its Content-Security-Policy, and
after sign-out the Back button refetches the page (and lands on sign-in) instead of showing the
previous user's data from the cache.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from httpx import Response
from portal_support import PASSWORD, csrf_of, set_password, sign_in
from sqlalchemy.exc import OperationalError

from aifactory.db.engine import Database
from aifactory.portal.web import CurrentUser, PortalRoute
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import Person

SECRET = "the-secret-detail-of-a-failure"


def _directives(response: Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    parts = [p.split() for p in policy.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


def _assert_hardened(response: Response) -> None:
    csp = _directives(response)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"] and csp["form-action"] == ["'self'"]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "camera=()" in response.headers["permissions-policy"]


def _not_stored(response: Response) -> bool:
    return "no-store" in response.headers.get("cache-control", "")


@pytest.fixture
def anna(db: Database, api: TestClient, operator: Person) -> tuple[Person, str]:
    """A signed-up applicant with a password and an awarded project (its code)."""
    person = member_of(db, "anna", "Nordic Tokens Oy")
    set_password(db, "anna")
    code, _ = award(api, person, operator)
    return person, code


def test_every_kind_of_response_carries_the_security_headers(
    portal: TestClient, anna: tuple[Person, str]
) -> None:
    person, _ = anna
    answers = {
        "page": portal.get("/"),
        "sign-in page": portal.get("/login"),
        "static file": portal.get("/static/portal.js"),
        "api json": portal.get("/api/v1/projects", headers=person.headers),
        "api error": portal.get("/api/v1/projects"),
        "api health": portal.get("/api/v1/health"),
        "unknown page": portal.get("/no-such-page"),
    }
    for what, response in answers.items():
        assert response.status_code in (200, 401, 404), what
        _assert_hardened(response)


def test_pages_and_api_data_are_never_stored_but_static_files_are(
    portal: TestClient, anna: tuple[Person, str]
) -> None:
    person, code = anna
    token = csrf_of(portal.get("/login").text)
    form = {"csrf_token": token, "username": "anna", "password": PASSWORD, "next": "/"}
    refused = portal.post("/login", data={**form, "csrf_token": "forged"})
    assert refused.status_code == 403 and _not_stored(refused)
    signed_in = portal.post("/login", data=form)
    assert signed_in.status_code == 303 and _not_stored(signed_in)
    project = portal.get(f"/projects/{code}")
    assert project.status_code == 200 and code in project.text and _not_stored(project)
    assert _not_stored(portal.get("/")) and _not_stored(portal.get("/calls"))
    api = portal.get(f"/api/v1/projects/{code}", headers=person.headers)
    assert api.status_code == 200 and _not_stored(api)
    out = portal.post("/logout", data={"csrf_token": csrf_of(project.text)})
    assert out.status_code == 303 and _not_stored(out)
    back = portal.get(f"/projects/{code}")  # what Back refetches: a redirect, not the data
    assert back.status_code == 303 and back.headers["location"].startswith("/login")
    assert _not_stored(back)
    for cacheable in ["/static/portal.css", "/static/portal.js", "/api/v1/health"]:
        response = portal.get(cacheable)
        assert response.status_code == 200 and not _not_stored(response), cacheable


def test_unknown_addresses_get_the_portal_page_and_the_api_keeps_json(
    portal: TestClient, anna: tuple[Person, str]
) -> None:
    page = portal.get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert '<header class="top">' in page.text and "<h1>Not found</h1>" in page.text
    assert "There is no page at this address." in page.text
    assert "Sign in</a>" in page.text
    sign_in(portal, "anna")
    known = portal.get("/projects/NO-SUCH/nothing/here")
    assert known.status_code == 404 and "Signed in as <strong>anna</strong>" in known.text
    wrong_method = portal.get("/logout")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"].startswith("text/html")
    assert "does not take this kind of request" in wrong_method.text
    for path in ["/api/v1/no-such-thing", "/api/no-such-version"]:
        api = portal.get(path)
        assert api.status_code == 404 and api.headers["content-type"] == "application/json"
        assert api.json()["error"]["code"] == "not_found"


def _failing_pages(portal: TestClient) -> None:
    """Test-only routes that fail: a page (portal route class) and an API endpoint."""
    pages = APIRouter(route_class=PortalRoute)

    @pages.get("/test-only/explode")
    def explode(user: CurrentUser) -> None:
        raise RuntimeError(SECRET)

    @pages.get("/test-only/database-down")
    def database_down() -> None:
        raise OperationalError("SELECT 1", {}, Exception(SECRET))

    @pages.get("/api/v1/test-only/explode")
    def api_explode() -> None:
        raise RuntimeError(SECRET)

    portal.app.include_router(pages)  # type: ignore[attr-defined]


def test_a_failing_page_is_an_html_500_without_the_traceback(
    portal: TestClient, anna: tuple[Person, str]
) -> None:
    _failing_pages(portal)
    sign_in(portal, "anna")
    page = portal.get("/test-only/explode")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "<h1>Something went wrong</h1>" in page.text
    assert "Signed in as <strong>anna</strong>" in page.text
    for leak in [SECRET, "Traceback", "RuntimeError", 'File "']:
        assert leak not in page.text
    _assert_hardened(page)  # the last-resort handler runs outside every middleware
    assert _not_stored(page)
    busy = portal.get("/test-only/database-down")
    assert busy.status_code == 503 and busy.headers["content-type"].startswith("text/html")
    assert busy.headers["retry-after"] == "1" and "database is busy" in busy.text
    assert SECRET not in busy.text
    api = portal.get("/api/v1/test-only/explode")
    assert api.status_code == 500 and api.json()["error"]["code"] == "internal"
    assert SECRET not in api.text
    _assert_hardened(api)


# --- in a real browser -----------------------------------------------------------------------

# Chromium reports each violation on the console ("... violates the following Content Security
# Policy directive ..."); the listener below reports them too, in case a build words it otherwise.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) =>
  console.error("Content Security Policy violation: " + e.violatedDirective));
"""


def _console(page: Any) -> list[str]:
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.add_init_script(REPORT_VIOLATIONS)
    return messages


def _violations(messages: list[str]) -> list[str]:
    return [m for m in messages if "Content Security Policy" in m]


@pytest.mark.slow
def test_back_after_sign_out_refetches_and_no_page_breaks_the_policy(
    browser: Any, db: Database, settings: Settings, anna: tuple[Person, str], operator: Person
) -> None:
    from playwright.sync_api import expect

    _, code = anna
    with BackgroundServer(settings, db) as server:
        context = browser.new_context()
        page = context.new_page()
        messages = _console(page)
        url = server.url
        page.goto(f"{url}/login")
        page.get_by_label("Username").fill("anna")
        page.get_by_role("textbox", name="Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.locator(".who")).to_contain_text("Signed in as anna")
        for path in ["/", "/calls", "/proposals", "/projects"]:
            page.goto(url + path)
            expect(page.locator("h1")).to_be_visible()
        page.goto(f"{url}/projects/{code}")
        expect(page.locator("h1")).to_contain_text(code)
        expect(page.locator("svg.chart")).to_have_count(1)
        page.get_by_role("button", name="Sign out").click()
        expect(page.locator(".notice")).to_contain_text("You are signed out.")
        back = page.go_back()
        assert back is not None, "Back showed the page from the cache, without asking the server"
        expect(page).to_have_url(f"{url}/login?next=%2Fprojects%2F{code}")
        expect(page.locator("body")).not_to_contain_text(code)
        expect(page.locator(".who")).not_to_contain_text("anna")
        _operator_pages(page, url, operator)
        assert _violations(messages) == [], messages
        _inline_handlers_are_refused(page, messages)
        context.close()


def _operator_pages(page: Any, url: str, operator: Person) -> None:
    """The operator's page draws utilisation meters (SVG, no inline style)."""
    from playwright.sync_api import expect

    page.goto(f"{url}/login")
    page.get_by_role("textbox", name="API token", exact=True).fill(operator.token)
    page.get_by_role("button", name="Sign in with token").click()
    expect(page.locator(".who")).to_contain_text("Signed in as olli")
    page.goto(f"{url}/operate")
    expect(page.locator("svg.meter").first).to_be_visible()
    page.goto(f"{url}/no-such-page")
    expect(page.locator("h1")).to_have_text("Not found")


def _inline_handlers_are_refused(page: Any, messages: list[str]) -> None:
    """The policy is enforced and its violations reach the console (the check above can fail)."""
    html = '<img src="/static/none.png" onerror="window.ranInline = true">'
    with page.expect_console_message(lambda m: "Content Security Policy" in m.text):
        page.evaluate("(html) => document.body.insertAdjacentHTML('beforeend', html)", html)
    assert page.evaluate("window.ranInline === undefined")
    assert _violations(messages), messages
