"""Bad input on the access path: a 4xx naming the rule, and nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.db.engine import Database
from aifactory.db.models import Proposal
from aifactory.domain.enums import OrganisationType, Role
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.people import Person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"
GOOD = {
    "call_id": "lumi-aif-pg",
    "title": "Tiny model",
    "organisation": "Nordic Tokens Oy",
    "research_kind": "open_rd",
    "gpu_hours": 100,
    "duration_months": 1,
    "partition": "LUMI-AI/gpu",
}


def _count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Proposal)) or 0)


@pytest.mark.parametrize(
    ("change", "status", "rule"),
    [
        ({"gpu_hours": 0}, 422, "greater_than"),
        ({"gpu_hours": -5}, 422, "greater_than"),
        ({"gpu_hours": 9000}, 422, "gpu_hour_limits"),
        ({"duration_months": 5}, 422, "allowed_durations"),
        ({"call_id": "atlantis-pg"}, 422, "known_call"),
        ({"partition": "LUMI-AI/nope"}, 422, "known_partition"),
        ({"partition": "MIMER/gpu"}, 422, "call_factory"),  # another factory: not this call
        ({"start_date": "2026-01-01"}, 422, "not_past"),
        ({"start_date": "2026-12-10", "pi_contract_end": "2026-12-01"}, 422, "date_order"),
        ({"organisation": "Nobody Ltd"}, 422, "your_organisation"),
        ({"research_kind": "espionage"}, 422, "enum"),
    ],
)
def test_bad_proposals_are_refused_naming_the_rule_and_store_nothing(
    db: Database, api: TestClient, change: dict[str, Any], status: int, rule: str
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    response = api.post(f"{API}/proposals", headers=anna.headers, json={**GOOD, **change})
    assert response.status_code == status, response.text
    assert rule in {d["rule"] for d in response.json()["error"]["details"]}
    assert _count(db) == 0


def test_closed_call_is_refused(db: Database, api: TestClient) -> None:
    set_clock(api, at("2028-03-01T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    response = api.post(
        f"{API}/proposals",
        headers=anna.headers,
        json={**GOOD, "call_id": "lumi-aif-ls", "gpu_hours": 60000, "duration_months": 3},
    )
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["rule"] == "call_open"
    assert _count(db) == 0


def test_ineligible_proposal_cannot_be_submitted_and_lists_failing_rules(
    db: Database, api: TestClient
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    us = member_of(db, "sam", "Valley Corp", OrganisationType.STARTUP, "US")
    body = {**GOOD, "organisation": "Valley Corp"}
    draft = ok(api.post(f"{API}/proposals", headers=us.headers, json=body), 201)
    response = api.post(f"{API}/proposals/{draft['id']}/submit", headers=us.headers)
    assert response.status_code == 422
    rules = {d["rule"] for d in response.json()["error"]["details"]}
    assert "country_status" in rules
    assert ok(api.get(f"{API}/proposals/{draft['id']}", headers=us.headers))["status"] == "draft"


def test_sme_figures_with_linked_enterprises_can_fail_the_sme_rule(
    db: Database, api: TestClient
) -> None:
    from aifactory.db.models import Organisation

    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    with db.session() as s:
        org = s.scalar(select(Organisation).where(Organisation.name == "Nordic Tokens Oy"))
        assert org is not None
        org.enterprise_links = [
            {
                "name": "Parent Group",
                "share": "0.8",
                "staff": 900,
                "turnover_eur": 300_000_000,
                "balance_sheet_eur": 200_000_000,
            }
        ]
    check = ok(
        api.post(
            f"{API}/eligibility/check",
            headers=anna.headers,
            json={
                "call_id": "lumi-aif-fl",
                "organisation": "Nordic Tokens Oy",
                "research_kind": "commercial",
                "duration_months": 1,
            },
        )
    )
    assert check["eligible"] is False
    failing = [r for r in check["rules"] if not r["passed"]]
    assert [r["rule"] for r in failing] == ["sme_definition"]
    assert "Parent Group" in failing[0]["reason"]


def test_reviewer_from_the_applicants_organisation_is_a_conflict(
    db: Database, api: TestClient, admin: Person, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    boss = member_of(
        db, "boss", "Big Motors AG", OrganisationType.LARGE_ENTERPRISE, "DE", staff=5000
    )
    colleague = member_of(db, "colleague", "Big Motors AG", roles=[(Role.REVIEWER, None)])
    body = {
        **GOOD,
        "call_id": "lumi-aif-ls",
        "organisation": "Big Motors AG",
        "research_kind": "commercial",
        "gpu_hours": 60000,
        "duration_months": 3,
        "pi_contract_end": "2028-01-01",
        "sections": SECTIONS,
    }
    p = ok(api.post(f"{API}/proposals", headers=boss.headers, json=body), 201)
    ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=boss.headers))
    ok(
        api.post(
            f"{API}/proposals/{p['id']}/assessment",
            headers=operator.headers,
            json={"feasible": True},
        )
    )
    response = api.post(
        f"{API}/proposals/{p['id']}/reviewers",
        headers=admin.headers,
        json={"username": colleague.username},
    )
    assert response.status_code == 409
    assert "conflict" in response.text
    assert ok(api.get(f"{API}/proposals/{p['id']}", headers=admin.headers))["reviews"] == []


def test_withdraw_before_decision_and_not_after(
    db: Database, api: TestClient, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    p = ok(api.post(f"{API}/proposals", headers=anna.headers, json=GOOD), 201)
    ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=anna.headers))
    out = ok(
        api.post(
            f"{API}/proposals/{p['id']}/withdraw",
            headers=anna.headers,
            json={"comment": "changed plans"},
        )
    )
    assert out["status"] == "withdrawn"
    assert out["transitions"][-1]["comment"] == "changed plans"
    again = api.post(
        f"{API}/proposals/{p['id']}/assessment", headers=operator.headers, json={"feasible": True}
    )
    assert again.status_code == 409


def test_others_cannot_see_or_touch_a_proposal(db: Database, api: TestClient) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    eve = member_of(db, "eve", "Eve Labs")
    p = ok(api.post(f"{API}/proposals", headers=anna.headers, json=GOOD), 201)
    unseen = api.get(f"{API}/proposals/{p['id']}", headers=eve.headers)
    unknown = api.get(f"{API}/proposals/{p['id'] + 1000}", headers=eve.headers)
    assert unseen.status_code == unknown.status_code == 404  # one answer: nothing leaks
    assert unseen.json()["error"]["message"] == f"proposal {p['id']} not found"
    assert api.post(f"{API}/proposals/{p['id']}/submit", headers=eve.headers).status_code == 404
    assert api.get(f"{API}/proposals", headers=eve.headers).json() == []
    bad = api.post(f"{API}/proposals", headers=eve.headers, json=GOOD)
    nobody = api.post(f"{API}/proposals", headers=eve.headers, json={**GOOD, "organisation": "X"})
    assert bad.status_code == nobody.status_code == 422  # not hers, or none: the same answer
    assert bad.json()["error"]["details"][0]["rule"] == "your_organisation"
