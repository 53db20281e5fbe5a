"""One end-to-end walk per access mode through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.domain.enums import OrganisationType, Role
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"


def _reviewers(db: Database, n: int) -> list[Person]:
    return [
        member_of(
            db,
            f"rev{i}",
            f"Review Institute {i}",
            OrganisationType.ACADEMIA,
            "DE",
            [(Role.REVIEWER, None)],
        )
        for i in range(n)
    ]


def test_playground_startup_gets_an_allocation_within_the_day(
    db: Database, api: TestClient, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    check = ok(
        api.post(
            f"{API}/eligibility/check",
            headers=anna.headers,
            json={
                "call_id": "lumi-aif-pg",
                "organisation": "Nordic Tokens Oy",
                "research_kind": "commercial",
                "duration_months": 2,
            },
        )
    )
    assert check["eligible"] is True
    assert {r["rule"] for r in check["rules"]} >= {"country_status", "organisation_type"}
    draft = ok(
        api.post(
            f"{API}/proposals",
            headers=anna.headers,
            json={
                "call_id": "lumi-aif-pg",
                "title": "Finnish LLM fine-tune",
                "organisation": "Nordic Tokens Oy",
                "research_kind": "open_rd",
                "gpu_hours": 1000,
                "duration_months": 2,
                "partition": "LUMI-AI/gpu",
            },
        ),
        201,
    )
    assert draft["status"] == "draft" and draft["deadline"] is None
    sub = ok(api.post(f"{API}/proposals/{draft['id']}/submit", headers=anna.headers))
    assert sub["status"] == "technical_assessment"
    assert sub["deadline"] == "2026-11-27"  # two working days
    assert [t["to_status"] for t in sub["transitions"]] == ["submitted", "technical_assessment"]
    queue = ok(api.get(f"{API}/proposals", headers=operator.headers))
    assert [p["id"] for p in queue] == [draft["id"]]
    done = ok(
        api.post(
            f"{API}/proposals/{draft['id']}/assessment",
            headers=operator.headers,
            json={"feasible": True, "gpu_hours": 800, "comment": "fits"},
        )
    )
    assert done["status"] == "accepted"
    assert done["project_code"] == "EHPC-AIF-2026PG11-0001"
    project = ok(api.get(f"{API}/projects/{done['project_code']}", headers=anna.headers))
    assert project["members"] == [{"username": "anna", "role": "pi"}]
    (alloc,) = project["allocations"]
    assert (alloc["factory"], alloc["system"], alloc["partition"]) == ("LUMI AIF", "LUMI-AI", "gpu")
    assert float(alloc["granted"]) == 800 and float(alloc["remaining"]) == 800
    assert (alloc["start_date"], alloc["end_date"]) == ("2026-11-25", "2027-01-24")
    assert {k: float(v) for k, v in alloc["funding"].items()} == {
        "eu": 0.5,
        "national": 0.4,
        "commercial": 0.1,
    }
    ledger = ok(api.get(f"{API}/allocations/{alloc['id']}/ledger", headers=anna.headers))
    assert [(e["kind"], float(e["gpu_hours"])) for e in ledger] == [("grant", 800.0)]


def test_fast_lane_is_first_come_first_served(
    db: Database, api: TestClient, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    ids = []
    for hour in (9, 10):
        set_clock(api, at(f"2026-11-25T{hour:02d}:00"))
        p = ok(
            api.post(
                f"{API}/proposals",
                headers=anna.headers,
                json={
                    "call_id": "lumi-aif-fl",
                    "title": f"Run {hour}",
                    "organisation": "Nordic Tokens Oy",
                    "research_kind": "commercial",
                    "gpu_hours": 20000,
                    "duration_months": 3,
                    "partition": "LUMI-AI/gpu",
                    "sections": SECTIONS,
                },
            ),
            201,
        )
        ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=anna.headers))
        ids.append(p["id"])
    jumped = api.post(
        f"{API}/proposals/{ids[1]}/assessment", headers=operator.headers, json={"feasible": True}
    )
    assert jumped.status_code == 409 and "first come, first served" in jumped.text
    first = ok(
        api.post(
            f"{API}/proposals/{ids[0]}/assessment",
            headers=operator.headers,
            json={"feasible": True},
        )
    )
    assert first["project_code"] == "EHPC-AIF-2026FL11-0001"
    second = ok(
        api.post(
            f"{API}/proposals/{ids[1]}/assessment",
            headers=operator.headers,
            json={"feasible": True},
        )
    )
    assert second["project_code"] == "EHPC-AIF-2026FL11-0002"
    project = ok(api.get(f"{API}/projects/{first['project_code']}", headers=anna.headers))
    assert {k: float(v) for k, v in project["allocations"][0]["funding"].items()} == {
        "eu": 0.0,
        "national": 0.0,
        "commercial": 1.0,
    }  # commercial work pays commercially


def _peer_reviewed(
    db: Database,
    api: TestClient,
    admin: Person,
    operator: Person,
    applicant: Person,
    body: dict,
    scores: dict[str, int],
) -> dict:
    p = ok(api.post(f"{API}/proposals", headers=applicant.headers, json=body), 201)
    sub = ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=applicant.headers))
    if sub["status"] == "technical_assessment":
        sub = ok(
            api.post(
                f"{API}/proposals/{p['id']}/assessment",
                headers=operator.headers,
                json={"feasible": True},
            )
        )
    assert sub["status"] == "peer_review"
    revs = _reviewers(db, 3)
    for rev in revs:
        ok(
            api.post(
                f"{API}/proposals/{p['id']}/reviewers",
                headers=admin.headers,
                json={"username": rev.username},
            )
        )
    for rev in revs:
        ok(
            api.post(
                f"{API}/proposals/{p['id']}/reviews",
                headers=rev.headers,
                json={"scores": scores, "comment": "solid"},
            )
        )
    return sub


def test_large_scale_goes_through_peer_review_and_is_decided_with_its_cutoff(
    db: Database, api: TestClient, admin: Person, operator: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    boss = member_of(
        db, "boss", "Big Motors AG", OrganisationType.LARGE_ENTERPRISE, "DE", staff=5000
    )
    body = {
        "call_id": "lumi-aif-ls",
        "title": "Foundation model for driving",
        "organisation": "Big Motors AG",
        "research_kind": "commercial",
        "gpu_hours": 120000,
        "duration_months": 6,
        "partition": "LUMI-AI/gpu",
        "pi_contract_end": "2028-12-31",
        "sections": SECTIONS,
    }
    sub = _peer_reviewed(
        db, api, admin, operator, boss, body, {"excellence": 4, "impact": 4, "feasibility": 5}
    )
    assert sub["cutoff"] == "2026-12-01"
    assert sub["deadline"] == "2026-12-15"  # ten working days after the cut-off
    early = api.post(
        f"{API}/calls/lumi-aif-ls/decisions", headers=admin.headers, json={"cutoff": "2026-12-01"}
    )
    assert early.status_code == 409  # the batch is decided after its cut-off
    set_clock(api, at("2026-12-02T10:00"))
    batch = ok(
        api.post(
            f"{API}/calls/lumi-aif-ls/decisions",
            headers=admin.headers,
            json={"cutoff": "2026-12-01"},
        )
    )
    assert batch["accepted"] == [sub["id"]] and batch["rejected"] == []
    final = ok(api.get(f"{API}/proposals/{sub['id']}", headers=boss.headers))
    assert final["project_code"].startswith("EHPC-AIF-2026LS")
    again = api.post(
        f"{API}/proposals/{sub['id']}/decision", headers=admin.headers, json={"accept": False}
    )
    assert again.status_code == 409 and "already final" in again.text


def test_ai_for_science_below_threshold_is_rejected_in_its_batch(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    op = make_person(db, "ops-it", [(Role.FACTORY_OPERATOR, "IT4LIA")])
    prof = member_of(db, "prof", "Università di Bologna", OrganisationType.ACADEMIA, "IT")
    body = {
        "call_id": "it4lia-as",
        "title": "Protein language model",
        "organisation": "Università di Bologna",
        "research_kind": "open_rd",
        "gpu_hours": 200000,
        "duration_months": 6,
        "partition": "IT4LIA AI/gb200",
        "pi_contract_end": "2028-01-31",
        "sections": SECTIONS,
    }
    sub = _peer_reviewed(
        db, api, admin, op, prof, body, {"excellence": 2, "impact": 3, "feasibility": 3}
    )
    set_clock(api, at(f"{sub['cutoff']}T12:00"))
    batch = ok(
        api.post(
            f"{API}/calls/it4lia-as/decisions",
            headers=admin.headers,
            json={"cutoff": sub["cutoff"]},
        )
    )
    assert batch["rejected"] == [sub["id"]]
    final = ok(api.get(f"{API}/proposals/{sub['id']}", headers=prof.headers))
    assert final["status"] == "rejected" and final["project_code"] is None


def test_hosting_call_adds_a_selected_factory_with_its_funding(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    minister = member_of(
        db, "min", "Research Ministry of Cyprus", OrganisationType.PUBLIC_BODY, "CY"
    )
    body = {
        "call_id": "hc-2025",
        "title": "Cyprus AI Factory",
        "organisation": "Research Ministry of Cyprus",
        "research_kind": "open_rd",
        "hosting": {
            "kind": "new_factory",
            "funding_eur": 40_000_000,
            "factory": {
                "name": "Aphrodite AIF",
                "hosting_entity": "CyI",
                "city": "Nicosia",
                "country": "CY",
                "members": ["MT"],
            },
        },
    }
    sub = _peer_reviewed(
        db, api, admin, admin, minister, body, {"strategic_fit": 4, "capacity": 4, "services": 4}
    )
    set_clock(api, at(f"{sub['cutoff']}T12:00"))
    ok(
        api.post(
            f"{API}/proposals/{sub['id']}/decision",
            headers=admin.headers,
            json={"accept": True, "comment": "selected"},
        )
    )
    factory = ok(api.get(f"{API}/factories/Aphrodite%20AIF", headers=admin.headers))
    assert factory["status"] == "selected" and factory["members"] == ["MT"]
    summary = ok(api.get(f"{API}/federation/summary", headers=admin.headers))
    assert summary["factories"] == 8 and summary["countries"] == 19
    assert summary["funding_total_eur"] == 1_540_000_000
