"""The full apply form, eligibility before it, and the decisions page's states (HTTP level)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from portal_support import csrf_of, set_password, sign_in

from aifactory.db.engine import Database
from aifactory.domain.enums import OrganisationType, Role
from aifactory.services import access, attachments, proposals
from aifactory.testing.access import at, member_of, ok
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import SECTIONS, form_fields, pdf_bytes

API = "/api/v1"
TRAIN = "MareNostrum 5 AI/llm-train"


def _field_error(html: str, field: str) -> str:
    match = re.search(rf'class="field-error" data-field="{re.escape(field)}">([^<]*)<', html)
    assert match, f"no error next to {field}"
    return match.group(1)


def _client(portal: TestClient, db: Database, username: str) -> tuple[TestClient, str]:
    client = TestClient(portal.app, raise_server_exceptions=False, follow_redirects=False)
    set_password(db, username)
    return client, sign_in(client, username)


def _clock(portal: TestClient, when: str) -> None:
    portal.app.state.clock = lambda: at(when)  # type: ignore[attr-defined]


def test_the_full_form_shows_every_error_beside_its_field_keeps_input_and_gates_eligibility(
    db: Database, portal: TestClient
) -> None:
    _clock(portal, "2026-11-25T09:00")
    member_of(db, "anna", "Nordic Tokens Oy")
    member_of(db, "sam", "Other Labs Oy")
    anna, token = _client(portal, db, "anna")
    page = anna.get("/calls/bsc-aif-fl/apply").text
    assert 'aria-required="true"' in page and "(required)" in page
    assert "Scaling evidence" in page and 'name="resources.1.gpu_hours"' in page
    typed = {
        "csrf_token": token,
        "organisation": "Nordic Tokens Oy",
        "research_kind": "open_rd",
        "duration_months": "3",
        "resources.0.partition": TRAIN,
        "resources.0.gpu_hours": "12,5",
        "resources.1.justification": "serving tests",
        "technical.method": "a 1B transformer",
        "ethics.dual_use": "yes",
        "resources_rows": "2",
        "team_rows": "2",
    }
    r = anna.post("/calls/bsc-aif-fl/apply", data=typed)
    assert r.status_code == 422
    html = r.text
    assert "give the proposal a title" in _field_error(html, "title")
    assert "not a valid number" in _field_error(html, "resources.0.gpu_hours")
    assert "Justification: say why" in _field_error(html, "resources.0.justification")
    assert "enter how many GPU-hours" in _field_error(html, "resources.1.gpu_hours")
    assert "choose where" in _field_error(html, "resources.1.partition")
    assert "Team: name at least one" in _field_error(html, "team")
    assert "Scaling evidence" in _field_error(html, "technical.scaling")
    assert "explain how it is handled" in _field_error(html, "ethics.dual_use")
    assert "answer yes or no" in _field_error(html, "ethics.environment")
    assert 'value="12,5"' in html and "a 1B transformer" in html and "serving tests" in html
    more = anna.post("/calls/bsc-aif-fl/apply", data={**typed, "more": "team"})
    assert more.status_code == 200 and 'name="team.2.name"' in more.text
    assert "a 1B transformer" in more.text and "field-error" not in more.text
    good = {
        **{k: v for k, v in typed.items() if not k.startswith(("resources.1", "ethics"))},
        **form_fields(TRAIN, "12 500.5"),
        "title": "Finnish LLM",
    }
    fake = ("annex.pdf", b"GIF89a not a pdf", "application/pdf")
    r = anna.post("/calls/bsc-aif-fl/apply", data=good, files={"attachments": fake})
    assert r.status_code == 422
    assert "not a PDF" in _field_error(r.text, "attachments") and "Finnish LLM" in r.text
    cv = ("cv.pdf", pdf_bytes("CV"), "application/pdf")
    r = anna.post("/calls/bsc-aif-fl/apply", data=good, files={"attachments": cv})
    assert r.status_code == 303, r.text
    location = r.headers["location"].split("?")[0]
    shown = anna.get(location).text
    assert "12,500.5" in shown and "Aino Virtanen" in shown and "90% weak scaling" in shown
    link = re.search(r'href="(/proposals/\d+/attachments/\d+)"', shown)
    assert link is not None
    assert anna.get(link.group(1)).content == cv[1]
    sam, _ = _client(portal, db, "sam")
    assert sam.get(link.group(1)).status_code == 404
    member_of(db, "val", "Valley Corp", OrganisationType.STARTUP, "US")
    val, _ = _client(portal, db, "val")  # not eligible: told why, rule by rule, and no form
    page = val.get("/calls/lumi-aif-fl/apply").text
    assert "Valley Corp cannot apply to this call" in page
    assert 'id="apply-form"' not in page
    failing = re.search(r'class="fail" data-rule="country_status">.*?</tr>', page, re.S)
    assert failing is not None and "US" in failing.group(0)


def _reviewed_proposal(
    db: Database, portal: TestClient, admin: Person, operator: Person
) -> tuple[int, list[Person]]:
    """A Large Scale proposal of the 2026-12-01 cut-off in peer review, one of two reviews in."""
    _clock(portal, "2026-11-25T09:00")
    boss = member_of(
        db, "boss", "Big Motors AG", OrganisationType.LARGE_ENTERPRISE, "DE", staff=5000
    )
    reviewers = [make_person(db, f"rev{i}", [(Role.REVIEWER, None)]) for i in range(2)]
    body: dict[str, Any] = {
        "call_id": "lumi-aif-ls",
        "title": "Driving model",
        "organisation": "Big Motors AG",
        "research_kind": "commercial",
        "duration_months": 6,
        "pi_contract_end": "2028-12-31",
        "resources": [{"partition": "LUMI-AI/gpu", "gpu_hours": 120000, "justification": "x"}],
        "sections": SECTIONS,
    }
    pid = ok(portal.post(f"{API}/proposals", headers=boss.headers, json=body), 201)["id"]
    ok(portal.post(f"{API}/proposals/{pid}/submit", headers=boss.headers))
    ok(
        portal.post(
            f"{API}/proposals/{pid}/assessment", headers=operator.headers, json={"feasible": True}
        )
    )
    for r in reviewers:
        who = {"username": r.username}
        ok(portal.post(f"{API}/proposals/{pid}/reviewers", headers=admin.headers, json=who))
    scores = {"scores": {"excellence": 4, "impact": 4.5, "feasibility": 5}}
    ok(portal.post(f"{API}/proposals/{pid}/reviews", headers=reviewers[0].headers, json=scores))
    return pid, reviewers


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_form_handlers_read_the_body_then_leave_database_work_off_the_event_loop(
    db: Database, portal: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/check and /apply are async to read the body; the services they call (the database,
    hashing uploads) must not run on the event loop, where they would stall every request."""
    calls: list[tuple[str, bool]] = []

    def watch(module: Any, name: str) -> None:
        real = getattr(module, name)

        def watched(*args: Any, **kwargs: Any) -> Any:
            calls.append((name, _on_event_loop()))
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, watched)

    for module, name in ((access, "check"), (proposals, "create"), (attachments, "add")):
        watch(module, name)
    _clock(portal, "2026-11-25T09:00")
    member_of(db, "anna", "Nordic Tokens Oy")
    anna, token = _client(portal, db, "anna")
    base = {"csrf_token": token, "organisation": "Nordic Tokens Oy", "research_kind": "open_rd"}
    fragment = anna.post(
        "/calls/bsc-aif-fl/check", data=base, headers={"x-fragment": "eligibility"}
    )
    assert fragment.status_code == 200
    assert anna.post("/calls/bsc-aif-fl/check", data=base).status_code == 200
    good = {**base, "duration_months": "3", "title": "Finnish LLM", **form_fields(TRAIN, "100")}
    cv = ("cv.pdf", pdf_bytes("CV"), "application/pdf")
    r = anna.post("/calls/bsc-aif-fl/apply", data=good, files={"attachments": cv})
    assert r.status_code == 303, r.text
    assert {name for name, _ in calls} == {"check", "create", "add"}
    assert [name for name, on_loop in calls if on_loop] == []


def test_odd_row_counts_are_ignored_not_a_server_error(db: Database, portal: TestClient) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` fails; so do 5000 digits."""
    _clock(portal, "2026-11-25T09:00")
    member_of(db, "anna", "Nordic Tokens Oy")
    anna, token = _client(portal, db, "anna")
    base = {"csrf_token": token, "organisation": "Nordic Tokens Oy", "research_kind": "open_rd"}
    for value in ("²", "٣", "1" * 5000, "0", "-1", " 3"):
        for path in ("/calls/bsc-aif-fl/check", "/calls/bsc-aif-fl/apply"):
            r = anna.post(path, data={**base, "resources_rows": value, "team_rows": value})
            assert r.status_code in (200, 422), (path, value[:8], r.status_code)
            assert 'name="resources.1.gpu_hours"' in r.text  # the default two rows
            assert 'name="resources.2.gpu_hours"' not in r.text
    r = anna.post("/calls/bsc-aif-fl/check", data={**base, "resources_rows": "4"})
    assert 'name="resources.3.gpu_hours"' in r.text


def test_decisions_page_says_when_a_proposal_can_be_decided_and_what_a_batch_did(
    db: Database, portal: TestClient, admin: Person, operator: Person
) -> None:
    pid, reviewers = _reviewed_proposal(db, portal, admin, operator)
    rev, _ = _client(portal, db, reviewers[1].username)
    queue = rev.get("/review").text  # the reviewer reads every section before scoring
    assert "90% weak scaling" in queue and "Aino Virtanen" in queue and "public domain" in queue
    ada, _ = _client(portal, db, "ada")
    card = _card(ada.get("/decisions").text, pid)
    assert "1 of 2 reviews in" in card and "threshold" in card and "4.50" in card
    assert "its cut-off is 2026-12-01" in card and f'action="/proposals/{pid}/decision"' not in card
    _clock(portal, "2026-12-02T10:00")
    ada, _ = _client(portal, db, "ada")  # a week later: signed in again
    page = ada.get("/decisions").text
    card = _card(page, pid)
    assert "1 of 2 reviews are in" in card and "cut-off is" not in card
    assert f'action="/proposals/{pid}/decision"' not in card
    assert "No proposal of this batch has all its reviews in yet." in page  # button disabled
    batch = {"csrf_token": csrf_of(page), "cutoff": "2026-12-01"}
    r = ada.post("/calls/lumi-aif-ls/decisions", data=batch)
    report = re.search(r'id="batch-report">([^<]*)<', r.text)
    assert report is not None
    assert report.group(1) == f"Nothing was decided. 1 waits: #{pid} for reviews (1 of 2 in)."
    scores = {"scores": {"excellence": 5, "impact": 4, "feasibility": 4}}
    ok(portal.post(f"{API}/proposals/{pid}/reviews", headers=reviewers[1].headers, json=scores))
    page = ada.get("/decisions").text
    card = _card(page, pid)
    assert "has all its reviews in yet" not in page and "1 proposal, 1 decidable now" in page
    assert "Decidable now" in card and f'action="/proposals/{pid}/decision"' in card
    assert "passes" in card and "2 of 2 reviews in" in card
    r = ada.post("/calls/lumi-aif-ls/decisions", data=batch)
    report = re.search(r'id="batch-report">([^<]*)<', r.text)
    assert report is not None and report.group(1) == "Decided 1: 1 awarded, 0 rejected."
    assert "Decision recorded" not in r.text


def _card(page: str, pid: int) -> str:
    match = re.search(
        rf'<section class="card decision-card"[^>]*id="proposal-{pid}">.*?</section>', page, re.S
    )
    assert match, f"no card for proposal {pid}"
    return match.group(0)
