"""The portal over plain HTTP on SQLite and PostgreSQL: sign-in, CSRF, redirects, roles, forms."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from portal_support import PASSWORD, csrf_of, set_password, sign_in
from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import PortalSession, Proposal
from aifactory.db.types import utcnow
from aifactory.domain.enums import Role
from aifactory.services import access
from aifactory.settings import Settings
from aifactory.testing.access import member_of
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import form_fields

PROTECTED = ["/proposals", "/projects", "/reports", "/review", "/operate", "/decisions", "/sim"]
APPLY = "/calls/lumi-aif-pg/apply"


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'class="field-error"[^>]*data-field="{re.escape(field)}">([^<]*)<', html)
    assert match, f"no error next to {field}"
    return match.group(1)


def _proposal_count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count(Proposal.id))) or 0)


@pytest.mark.parametrize("path", PROTECTED)
def test_signed_out_visitors_are_sent_to_sign_in_and_back(portal: TestClient, path: str) -> None:
    r = portal.get(path + "?x=1")
    assert r.status_code == 303
    assert r.headers["location"] == "/login?next=" + path.replace("/", "%2F") + "%3Fx%3D1"


def test_public_pages_need_no_sign_in(portal: TestClient) -> None:
    overview = portal.get("/")
    assert overview.status_code == 200
    assert "15 Member States + 2 participating states" in overview.text
    assert portal.get("/calls").status_code == 200
    assert portal.get("/static/portal.css").status_code == 200


def test_sign_in_sets_a_hardened_cookie_and_sign_out_kills_the_session(
    db: Database, portal: TestClient, applicant: Person
) -> None:
    set_password(db, "anna")
    token = csrf_of(portal.get("/login").text)
    r = portal.post(
        "/login",
        data={"csrf_token": token, "username": "anna", "password": PASSWORD, "next": "/proposals"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/proposals"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    secret = portal.cookies["aif_session"]
    assert portal.get("/proposals").status_code == 200
    out = portal.post("/logout", data={"csrf_token": csrf_of(portal.get("/proposals").text)})
    assert out.status_code == 303
    with db.session() as s:
        assert s.scalar(select(func.count(PortalSession.id))) == 0
    portal.cookies.set("aif_session", secret)  # a copied cookie is worthless after sign-out
    assert portal.get("/proposals").status_code == 303


def test_wrong_password_is_refused_with_one_vague_message(
    db: Database, portal: TestClient, applicant: Person
) -> None:
    set_password(db, "anna")
    token = csrf_of(portal.get("/login").text)
    for user, password in [("anna", "wrong password!"), ("nobody", PASSWORD)]:
        r = portal.post(
            "/login", data={"csrf_token": token, "username": user, "password": password}
        )
        assert r.status_code == 401
        assert "unknown user or wrong password" in r.text
    assert "aif_session" not in portal.cookies


def test_an_api_token_signs_in_too(portal: TestClient, applicant: Person) -> None:
    token = csrf_of(portal.get("/login").text)
    r = portal.post(
        "/login", data={"csrf_token": token, "method": "token", "token": applicant.token}
    )
    assert r.status_code == 303
    assert "Signed in as <strong>anna</strong>" in portal.get("/proposals").text


def test_every_post_without_the_right_csrf_token_is_refused(
    db: Database, portal: TestClient, applicant: Person
) -> None:
    r = portal.post("/login", data={"username": "anna", "password": PASSWORD})
    assert r.status_code == 403
    set_password(db, "anna")
    sign_in(portal, "anna")
    other = TestClient(portal.app, follow_redirects=False)
    foreign = sign_in(other, "anna")  # a valid token, but of another session
    for token in ["", "forged", foreign]:
        for path in ["/logout", APPLY, "/proposals/1/withdraw", "/projects/X/jobs"]:
            r = portal.post(path, data={"csrf_token": token, "title": "x"})
            assert r.status_code == 403, (path, token)
            assert "security token" in r.text
    assert _proposal_count(db) == 0


def test_open_redirects_are_neutralised(
    db: Database, portal: TestClient, applicant: Person
) -> None:
    set_password(db, "anna")
    token = csrf_of(portal.get("/login").text)
    for target in ["//evil.example/", "https://evil.example/", "/\\evil.example"]:
        r = portal.post(
            "/login",
            data={"csrf_token": token, "username": "anna", "password": PASSWORD, "next": target},
        )
        assert r.headers["location"] == "/"


ROLE_PAGES: dict[str, dict[str, int]] = {
    "applicant": {"/review": 403, "/operate": 403, "/decisions": 403, "/reports": 200},
    "reviewer": {"/review": 200, "/operate": 403, "/decisions": 403},
    "operator": {"/review": 403, "/operate": 200, "/decisions": 403},
    "admin": {"/review": 200, "/operate": 200, "/decisions": 200, "/sim": 200},
}
ROLES = {
    "applicant": [(Role.APPLICANT, None)],
    "reviewer": [(Role.REVIEWER, None)],
    "operator": [(Role.FACTORY_OPERATOR, "LUMI AIF")],
    "admin": [(Role.FEDERATION_ADMIN, None)],
}


@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_each_role_sees_its_pages_and_a_403_page_elsewhere(
    db: Database, portal: TestClient, role: str
) -> None:
    make_person(db, role, ROLES[role])
    set_password(db, role)
    sign_in(portal, role)
    for path, status in ROLE_PAGES[role].items():
        r = portal.get(path)
        assert r.status_code == status, path
        assert r.headers["content-type"].startswith("text/html")
        if status == 403:
            assert "Not allowed" in r.text and "needs one of the roles" in r.text


def test_bad_input_is_shown_next_to_its_field_and_nothing_is_stored(
    db: Database, portal: TestClient
) -> None:
    member_of(db, "anna", "Nordic Tokens Oy")
    set_password(db, "anna")
    token = sign_in(portal, "anna")
    form = {
        "csrf_token": token,
        "organisation": "Nordic Tokens Oy",
        "research_kind": "open_rd",
        "title": "Fine-tune",
        "resources.0.gpu_hours": "100000",
        "duration_months": "2",
        "resources.0.partition": "LUMI-AI/gpu",
    }
    r = portal.post(APPLY, data=form)
    assert r.status_code == 422
    assert "at most 5000 GPU-h" in _field_error(r.text, "resources")  # the total of the rows
    hours = "resources.0.gpu_hours"
    r = portal.post(APPLY, data={**form, hours: "lots", "start_date": "2026-13-40"})
    assert "is not a valid number" in _field_error(r.text, hours)
    assert "is not a valid date" in _field_error(r.text, "start_date")
    r = portal.post(APPLY, data={**form, "title": " "})
    assert _field_error(r.text, "title")
    assert _proposal_count(db) == 0
    r = portal.post(APPLY, data={**form, hours: "1,000"})
    assert r.status_code == 303 and _proposal_count(db) == 1


def test_eligibility_is_checked_rule_by_rule_for_members_only(
    db: Database, portal: TestClient
) -> None:
    member_of(db, "anna", "Nordic Tokens Oy")
    member_of(db, "bert", "Big Corp AG", country="DE", staff=5000)
    set_password(db, "anna")
    token = sign_in(portal, "anna")
    check = "/calls/lumi-aif-fl/check"
    ok = portal.post(
        check,
        data={
            "csrf_token": token,
            "organisation": "Nordic Tokens Oy",
            "research_kind": "commercial",
        },
        headers={"X-Fragment": "eligibility"},
    )
    assert ok.status_code == 200 and "Eligible: every rule passes." in ok.text
    assert 'data-rule="sme_definition"' in ok.text
    other = portal.post(
        check,
        data={"csrf_token": token, "organisation": "Big Corp AG", "research_kind": "commercial"},
        headers={"X-Fragment": "eligibility"},
    )
    assert "not an organisation you belong to" in other.text and "Eligible" not in other.text


def test_user_text_is_escaped_everywhere(db: Database, portal: TestClient) -> None:
    member_of(db, "anna", "Nordic Tokens Oy")
    set_password(db, "anna")
    token = sign_in(portal, "anna")
    evil = '<script>alert("x")</script>'
    r = portal.post(
        APPLY,
        data={
            "csrf_token": token,
            "organisation": "Nordic Tokens Oy",
            "research_kind": "open_rd",
            "title": evil,
            "resources.0.gpu_hours": "10",
            "duration_months": "1",
            "resources.0.partition": "LUMI-AI/gpu",
        },
    )
    page = portal.get(r.headers["location"]).text
    assert evil not in page and "&lt;script&gt;" in page
    listing = portal.get("/proposals").text
    assert evil not in listing


def test_report_csv_downloads_and_sim_plots_cannot_escape_their_folder(
    db: Database, portal: TestClient, admin: Person
) -> None:
    set_password(db, "ada")
    sign_in(portal, "ada")
    r = portal.get("/reports.csv?group_by=user-country")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    header = "user-country,allocations,granted,used,reserved,remaining,label"
    assert r.text.splitlines()[0] == header
    assert 'filename="usage-by-user-country.csv"' in r.headers["content-disposition"]
    bad = portal.get("/reports?group_by=factory&start=2026-05-01&end=2026-04-01")
    assert bad.status_code == 422 and "before start" in _field_error(bad.text, "end")
    for path in ["/sim/..%2F..%2Fetc/passwd", "/sim/run/..%2Faifactory.db", "/sim/x/y.png"]:
        assert portal.get(path).status_code == 404


def _client(portal: TestClient, db: Database, username: str) -> tuple[TestClient, str]:
    client = TestClient(portal.app, raise_server_exceptions=False, follow_redirects=False)
    set_password(db, username)
    return client, sign_in(client, username)


def test_large_scale_goes_through_assessment_review_and_a_decision_forms(
    db: Database, portal: TestClient, operator: Person, admin: Person
) -> None:
    # Submitted on a cut-off day, a proposal is in that day's batch and may be decided at once;
    # the test applies on a day that is no cut-off (it failed on the 1st and 15th of a month).
    today = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    call = access.get_call("lumi-aif-ls")
    day = next(today + timedelta(days=n) for n in range(7) if (today + timedelta(days=n)).date()
               not in call.all_cutoffs)  # fmt: skip
    portal.app.state.clock = lambda: day  # type: ignore[attr-defined]
    member_of(db, "anna", "Nordic Tokens Oy")
    member_of(db, "rev", "Review Institute", country="DE", roles=[(Role.REVIEWER, None)])
    anna, token = _client(portal, db, "anna")
    r = anna.post(
        "/calls/lumi-aif-ls/apply",
        data={
            "csrf_token": token,
            "organisation": "Nordic Tokens Oy",
            "research_kind": "open_rd",
            "title": "Big run",
            "duration_months": "3",
            "pi_contract_end": "2031-01-01",
            **form_fields("LUMI-AI/gpu", "60,000"),
        },
    )
    assert r.status_code == 303, r.text
    pid = r.headers["location"].split("/")[2].split("?")[0]
    olli, token = _client(portal, db, "olli")
    r = olli.post(f"/proposals/{pid}/assess", data={"csrf_token": token, "feasible": "maybe"})
    assert r.status_code == 422 and _field_error(r.text, "feasible")
    r = olli.post(f"/proposals/{pid}/assess", data={"csrf_token": token, "feasible": "yes"})
    assert r.status_code == 303
    ada, token = _client(portal, db, "ada")
    r = ada.post(f"/proposals/{pid}/reviewers", data={"csrf_token": token, "reviewer": "anna"})
    assert r.status_code == 422 and "reviewer role" in _field_error(r.text, "reviewer")
    r = ada.post(f"/proposals/{pid}/reviewers", data={"csrf_token": token, "reviewer": "rev"})
    assert r.status_code == 303
    rev, token = _client(portal, db, "rev")
    assert "Big run" in rev.get("/review").text
    scores = {"scores.excellence": "9", "scores.impact": "4", "scores.feasibility": "4"}
    r = rev.post(f"/proposals/{pid}/review", data={"csrf_token": token, **scores})
    assert r.status_code == 422 and "outside 0..5" in _field_error(r.text, "scores.excellence")
    r = rev.post(
        f"/proposals/{pid}/review", data={"csrf_token": token, **scores, "scores.excellence": "4"}
    )
    assert r.status_code == 303
    page = ada.get("/decisions").text
    assert "Big run" in page and "Not decidable yet: its cut-off is" in page
    r = ada.post(
        f"/proposals/{pid}/decision",
        data={"csrf_token": csrf_of(page), "accept": "yes", "comment": "good"},
    )
    assert r.status_code == 422 and "decided with its batch after that date" in r.text


def test_simulator_runs_are_listed_with_their_plots(
    db: Database, portal: TestClient, settings: Settings, admin: Person
) -> None:
    run = settings.data_dir / "sim" / "easy-sdsc"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text('{"mean_wait_s": 1234.5, "jobs": 54000, "nested": {}}')
    (run / "wait_cdf.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    set_password(db, "ada")
    sign_in(portal, "ada")
    page = portal.get("/sim").text
    assert (
        "easy-sdsc" in page
        and "1,234.50" in page
        and "54,000" in page
        and 'src="/sim/easy-sdsc/wait_cdf.png"' in page
    )
    plot = portal.get("/sim/easy-sdsc/wait_cdf.png")
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
