"""Forms and the calls page over HTTP (SQLite and PostgreSQL): the calls filter is a plain GET
form with human words and grouped rows; a form shows all its errors at once, beside the fields
and in a summary linking to them, with what was typed kept; the simulator page keeps server
paths from applicants."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient
from portal_support import set_password, sign_in

from aifactory.db.engine import Database
from aifactory.db.types import utcnow
from aifactory.domain.enums import Role
from aifactory.services import access
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import form_fields

SHOWN = re.compile(r"(\d+) calls? shown")


def _shown(html: str) -> int:
    match = SHOWN.search(html)
    assert match, "no count of the calls shown"
    return int(match.group(1))


def _client(portal: TestClient, db: Database, username: str) -> tuple[TestClient, str]:
    client = TestClient(portal.app, raise_server_exceptions=False, follow_redirects=False)
    set_password(db, username)
    return client, sign_in(client, username)


def _errors(html: str, field: str) -> list[str]:
    return re.findall(rf'class="field-error" data-field="{re.escape(field)}">([^<]*)<', html)


def test_calls_are_grouped_in_words_and_filtered_by_a_plain_get_form(portal: TestClient) -> None:
    page = portal.get("/calls")
    assert page.status_code == 200
    html = page.text
    assert '<form method="get" action="/calls"' in html and _shown(html) == 29
    assert len(re.findall(r'<th scope="row">', html)) == 5  # one row per mode, not 29
    assert "Playground at 7 factories" in html and 'href="/calls/bsc-aif-pg/apply"' in html
    for words in ("first come, first served", "EU Member States", "start-ups", "500,000 GPU-hours"):
        assert words in html, words
    for code in ("fifo", "member_state", "open_rd", "large_enterprise", "public_body"):
        assert code not in html, code

    one = portal.get("/calls", params={"mode": "PG", "factory": "LUMI AIF"}).text
    assert _shown(one) == 1 and 'href="/calls/lumi-aif-pg/apply"' in one
    assert "bsc-aif-pg" not in one and 'id="mode-FL"' not in one
    assert '<option value="PG" selected>' in one and '<option value="LUMI AIF" selected>' in one
    hosting = portal.get("/calls", params={"factory": "federation"}).text
    assert _shown(hosting) == 1 and "hosting call" in hosting
    open_now = _shown(portal.get("/calls", params={"status": "open"}).text)
    closed = _shown(portal.get("/calls", params={"status": "closed"}).text)
    assert open_now + closed == 29

    bad = portal.get("/calls", params={"mode": "XX", "status": "soon"})
    assert bad.status_code == 422 and _shown(bad.text) == 29  # bad filters are dropped, named
    assert "is not one of the choices" in _errors(bad.text, "mode")[0]
    assert _errors(bad.text, "status") and 'href="#f-mode"' in bad.text
    assert 'aria-invalid="true"' in bad.text


def test_a_form_shows_all_its_errors_at_once_and_keeps_the_input(
    db: Database, portal: TestClient, operator: Person, api: TestClient
) -> None:
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    project, _ = award(api, anna, operator)
    set_password(db, "anna")
    token = sign_in(portal, "anna")
    form = {"csrf_token": token, "action": "start", "project": project, "kind": "vnc",
            "gpus": "a few", "time": "forever", "idle_timeout": "1h"}  # fmt: skip
    r = portal.post("/sessions", data=form)
    assert r.status_code == 422
    assert "is not a whole number" in _errors(r.text, "gpus")[0]
    assert _errors(r.text, "kind") and _errors(r.text, "time")  # all three at once
    for typed in ('value="a few"', 'value="forever"'):
        assert typed in r.text, typed
    summary = re.search(r'<div class="form-errors".*?</div>', r.text, re.S)
    assert summary and all(f'href="#f-{f}"' in summary.group(0) for f in ("gpus", "kind", "time"))
    assert re.search(r'id="f-gpus"[^>]*aria-required="true"[^>]*aria-invalid="true"', r.text)
    assert "(required)" in r.text
    ok = portal.post("/sessions", data={**form, "kind": "jupyter", "gpus": "1", "time": "2h"})
    assert ok.status_code == 303


def test_the_simulator_page_shows_server_paths_to_staff_only(
    db: Database, portal: TestClient, settings: Settings, admin: Person
) -> None:
    make_person(db, "appl", [(Role.APPLICANT, None)])
    root = str(settings.data_dir / "sim")
    for username, sees in (("appl", False), ("ada", True)):
        client = TestClient(portal.app, raise_server_exceptions=False, follow_redirects=False)
        set_password(db, username)
        sign_in(client, username)
        page = client.get("/sim")
        assert page.status_code == 200
        assert (root in page.text) is sees, username
        assert (str(settings.data_dir) in page.text) is sees, username


def test_assessment_and_review_forms_show_every_error_and_keep_what_was_typed(
    db: Database, portal: TestClient, operator: Person, admin: Person
) -> None:
    today = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    cutoffs = access.get_call("lumi-aif-ls").all_cutoffs
    day = next(d for d in (today + timedelta(days=n) for n in range(7)) if d.date() not in cutoffs)
    portal.app.state.clock = lambda: day  # type: ignore[attr-defined]
    member_of(db, "anna", "Nordic Tokens Oy")
    member_of(db, "rev", "Review Institute", country="DE", roles=[(Role.REVIEWER, None)])
    anna, token = _client(portal, db, "anna")
    fields = {"organisation": "Nordic Tokens Oy", "research_kind": "open_rd", "title": "Big run",
              "duration_months": "3", "pi_contract_end": "2031-01-01"}  # fmt: skip
    r = anna.post(
        "/calls/lumi-aif-ls/apply",
        data={"csrf_token": token, **fields, **form_fields("LUMI-AI/gpu", "60,000")},
    )
    assert r.status_code == 303, r.text
    pid = r.headers["location"].split("/")[2].split("?")[0]

    olli, token = _client(portal, db, "olli")
    typed = {"csrf_token": token, "feasible": "maybe", "gpu_hours": "12,5", "comment": "tidy"}
    r = olli.post(f"/proposals/{pid}/assess", data=typed)
    assert r.status_code == 422
    assert _errors(r.text, "feasible") and "decimal mark" in _errors(r.text, "gpu_hours")[0]
    assert 'value="12,5"' in r.text and ">tidy</textarea>" in r.text
    assert f'href="#f-p{pid}-gpu_hours"' in r.text  # the summary links to the field
    r = olli.post(f"/proposals/{pid}/assess", data={**typed, "feasible": "yes", "gpu_hours": ""})
    assert r.status_code == 303

    ada, token = _client(portal, db, "ada")
    r = ada.post(f"/proposals/{pid}/reviewers", data={"csrf_token": token, "reviewer": "rev"})
    assert r.status_code == 303
    rev, token = _client(portal, db, "rev")
    scores = {"scores.excellence": "4.5", "scores.impact": "lots", "scores.feasibility": " "}
    r = rev.post(f"/proposals/{pid}/review", data={"csrf_token": token, **scores, "comment": "ok"})
    assert r.status_code == 422
    assert "not a valid number" in _errors(r.text, "scores.impact")[0]
    assert "required" in _errors(r.text, "scores.feasibility")[0]  # both at once
    assert 'value="4.5"' in r.text and 'value="lots"' in r.text and ">ok</textarea>" in r.text
    assert "Expected impact: " in r.text  # the summary names the criterion, not its code
