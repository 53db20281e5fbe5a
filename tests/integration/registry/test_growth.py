"""Growth through the product: a decided hosting call becomes a factory with its systems,
funding and access calls; a new country joins a consortium; the summary follows; an operator
drains a site. Through the API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.domain.enums import OrganisationType, Role
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.people import Person, make_person

API = "/api/v1"
NEW = "Aphrodite AIF"
DE, NATIONAL = 30_000_000, 25_000_000
JOIN_FUNDING = 7_000_000
SCORES = {"strategic_fit": 4, "capacity": 4, "services": 4}
FACTORY = {
    "name": NEW,
    "hosting_entity": "The Cyprus Institute",
    "city": "Nicosia",
    "country": "CY",
    "members": ["GR"],
    "capacity_split": {"eu": 0.5, "national": 0.4, "commercial": 0.1},
    "systems": [
        {
            "name": "Aphrodite-1",
            "kind": "new",
            "deployment_year": 2026,
            "partitions": [
                {
                    "name": "gpu",
                    "gpu_model": "H200",
                    "nodes": 16,
                    "gpus_per_node": 8,
                    "gpu_memory_gb": 141,
                    "charge_factor": 1.5,
                }
            ],
        }
    ],
}
NEW_FACTORY = {
    "kind": "new_factory",
    "factory": FACTORY,
    "funding": [
        {"source": "digital_europe", "amount_eur": DE},
        {"source": "national", "amount_eur": NATIONAL, "purpose": "Republic of Cyprus"},
    ],
}
JOIN = {
    "kind": "join",
    "factory_name": "LUMI AIF",
    "country": "MD",
    "countries": [{"code": "MD", "name": "Moldova", "status": "participating_state"}],
    "funding": [{"source": "national", "amount_eur": JOIN_FUNDING}],
}


def _hosting_body(title: str, hosting: dict[str, Any]) -> dict[str, Any]:
    return {
        "call_id": "hc-2025",
        "title": title,
        "organisation": "Research Ministry of Cyprus",
        "research_kind": "open_rd",
        "hosting": hosting,
    }


def _accepted(
    db: Database, api: TestClient, admin: Person, minister: Person, body: dict[str, Any]
) -> dict[str, Any]:
    """Create, submit, review and accept a hosting proposal at its cut-off."""
    p = ok(api.post(f"{API}/proposals", headers=minister.headers, json=body), 201)
    sub = ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=minister.headers))
    if sub["status"] == "technical_assessment":
        url = f"{API}/proposals/{p['id']}/assessment"
        sub = ok(api.post(url, headers=admin.headers, json={"feasible": True}))
    for i in range(3):
        name = f"rev{p['id']}x{i}"
        rev = make_person(db, name, [(Role.REVIEWER, None)])
        url = f"{API}/proposals/{p['id']}/reviewers"
        ok(api.post(url, headers=admin.headers, json={"username": name}))
        review = {"scores": SCORES, "comment": "solid"}
        ok(api.post(f"{API}/proposals/{p['id']}/reviews", headers=rev.headers, json=review))
    set_clock(api, at(f"{sub['cutoff']}T12:00"))
    decision = {"accept": True, "comment": "selected"}
    return ok(api.post(f"{API}/proposals/{p['id']}/decision", headers=admin.headers, json=decision))


def test_hosting_awards_grow_the_federation_by_exactly_what_was_awarded(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    minister = member_of(
        db, "min", "Research Ministry of Cyprus", OrganisationType.PUBLIC_BODY, "CY"
    )
    before = ok(api.get(f"{API}/federation/summary", headers=admin.headers))
    assert "CY" not in before["countries_by_status"]["member_state"]
    assert not ok(api.get(f"{API}/calls", headers=admin.headers, params={"factory": NEW}))

    _accepted(db, api, admin, minister, _hosting_body("Cyprus AI Factory", NEW_FACTORY))
    set_clock(api, at("2026-11-25T09:00"))
    _accepted(db, api, admin, minister, _hosting_body("Moldova joins LUMI AIF", JOIN))

    factory = ok(api.get(f"{API}/factories/{NEW}", headers=admin.headers))
    assert (factory["status"], factory["country"], factory["members"]) == ("selected", "CY", ["GR"])
    assert factory["hosting_entity"] == "The Cyprus Institute" and factory["city"] == "Nicosia"
    split = factory["capacity_split"]
    assert (split["eu"], split["national"], split["commercial"]) == (0.5, 0.4, 0.1)
    (system,) = factory["systems"]
    (gpu,) = system["partitions"]
    assert (gpu["gpu_model"], gpu["nodes"], gpu["gpus_per_node"]) == ("H200", 16, 8)
    assert (gpu["gpu_memory_gb"], gpu["charge_factor"]) == (141, 1.5)
    lumi = ok(api.get(f"{API}/factories/LUMI AIF", headers=admin.headers))
    assert "MD" in lumi["members"]
    countries = {c["code"]: c for c in ok(api.get(f"{API}/countries", headers=admin.headers))}
    assert countries["MD"]["status"] == "participating_state"

    after = ok(api.get(f"{API}/federation/summary", headers=admin.headers))
    assert after["factories"] == before["factories"] + 1 and NEW in after["factory_names"]
    assert after["countries"] == before["countries"] + 2  # CY hosts, MD joins (GR was in)
    grouped_before, grouped_after = before["countries_by_status"], after["countries_by_status"]
    assert grouped_after["member_state"] == sorted([*grouped_before["member_state"], "CY"])
    ps_before = grouped_before["participating_state"]
    assert grouped_after["participating_state"] == sorted([*ps_before, "MD"])
    funding_before, funding_after = before["funding_by_source_eur"], after["funding_by_source_eur"]
    assert funding_after["digital_europe"] - funding_before["digital_europe"] == DE
    assert funding_after["national"] - funding_before["national"] == NATIONAL + JOIN_FUNDING
    assert after["funding_total_eur"] - before["funding_total_eur"] == DE + NATIONAL + JOIN_FUNDING
    assert after["eu_funding_eur"] - before["eu_funding_eur"] == DE
    assert after["capacity_gpus"] - before["capacity_gpus"] == 16 * 8
    assert after["capacity_gpus_by_factory"][NEW] == 128

    calls = ok(api.get(f"{API}/calls", headers=admin.headers, params={"factory": NEW}))
    assert sorted(c["id"] for c in calls) == [
        f"aphrodite-aif-{m}" for m in ("as", "fl", "ls", "pg")
    ]
    large = ok(api.get(f"{API}/calls/aphrodite-aif-ls", headers=admin.headers))
    assert large["factory"] == NEW and large["next_cutoff"] is not None


def test_a_new_factorys_playground_call_takes_proposals(
    db: Database, api: TestClient, admin: Person
) -> None:
    """The calls of a factory added through the API take proposals for its partitions."""
    set_clock(api, at("2026-11-25T09:00"))
    ok(api.post(f"{API}/factories", headers=admin.headers, json=FACTORY), 201)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    body = {
        "call_id": "aphrodite-aif-pg",
        "title": "Greek LLM fine-tune",
        "organisation": "Nordic Tokens Oy",
        "research_kind": "open_rd",
        "gpu_hours": 1000,
        "duration_months": 2,
        "partition": "Aphrodite-1/gpu",
    }
    draft = ok(api.post(f"{API}/proposals", headers=anna.headers, json=body), 201)
    assert draft["call_id"] == "aphrodite-aif-pg" and draft["factory"] == NEW


def test_bad_hosting_payloads_name_the_field_and_the_rule(
    db: Database, api: TestClient, admin: Person
) -> None:
    set_clock(api, at("2026-11-25T09:00"))
    minister = member_of(
        db, "min", "Research Ministry of Cyprus", OrganisationType.PUBLIC_BODY, "CY"
    )
    bad_partition = {**FACTORY, "systems": [{**FACTORY["systems"][0]}]}  # type: ignore[dict-item]
    bad_partition["systems"][0]["partitions"] = [
        {**FACTORY["systems"][0]["partitions"][0], "nodes": 0}
    ]  # type: ignore[index]
    cases = [
        ({**NEW_FACTORY, "factory": bad_partition}, "hosting.factory.systems.0.partitions.0.nodes"),
        ({**NEW_FACTORY, "factory": {**FACTORY, "country": "XX"}}, "hosting.factory.country"),
        ({**NEW_FACTORY, "factory": {**FACTORY, "name": "LUMI AIF"}}, "hosting.factory.name"),
        ({**JOIN, "countries": []}, "hosting.country"),
        ({**JOIN, "factory_name": "Atlantis AIF"}, "hosting.factory_name"),
        (
            {**NEW_FACTORY, "funding": [{"source": "lottery", "amount_eur": 1}]},
            "hosting.funding.0.source",
        ),
    ]
    for hosting, field in cases:
        response = api.post(
            f"{API}/proposals", headers=minister.headers, json=_hosting_body("Bad", hosting)
        )
        assert response.status_code == 422, (field, response.text)
        fields = [d["field"] for d in response.json()["error"]["details"]]
        assert any(f.endswith(field) for f in fields), (field, fields)


def test_operators_drain_their_site_through_legal_moves_only(
    db: Database, api: TestClient, admin: Person, operator: Person
) -> None:
    url = f"{API}/factories/LUMI AIF/status"
    drained = ok(api.post(url, headers=operator.headers, json={"status": "draining"}))
    assert drained["status"] == "draining"
    back = ok(api.post(url, headers=operator.headers, json={"status": "operational"}))
    assert back["status"] == "operational"
    illegal = api.post(url, headers=operator.headers, json={"status": "selected"})
    assert illegal.status_code == 409
    (detail,) = illegal.json()["error"]["details"]
    assert (detail["field"], detail["rule"]) == ("status", "legal_transition")
    unknown = api.post(url, headers=operator.headers, json={"status": "asleep"})
    assert unknown.status_code == 422
    other = f"{API}/factories/BSC AIF/status"
    refused = api.post(other, headers=operator.headers, json={"status": "draining"})
    assert refused.status_code == 403
    before = ok(api.get(f"{API}/federation/summary", headers=admin.headers))
    ok(api.post(url, headers=admin.headers, json={"status": "retired"}))
    after = ok(api.get(f"{API}/federation/summary", headers=admin.headers))
    lumi_gpus = before["capacity_gpus_by_factory"]["LUMI AIF"]
    assert lumi_gpus > 0 and after["capacity_gpus"] == before["capacity_gpus"] - lumi_gpus
    assert after["factories"] == before["factories"] - 1
    assert "LUMI AIF" not in after["factory_names"] + list(after["capacity_gpus_by_factory"])
    assert after["funding_total_eur"] == before["funding_total_eur"]  # committed money stays
    final = api.post(url, headers=admin.headers, json={"status": "operational"})
    assert final.status_code == 409 and "retired is final" in final.text
    audit = ok(
        api.get(
            f"{API}/audit",
            headers=admin.headers,
            params={"action": "factory_status", "object_id": "LUMI AIF"},
        )
    )
    moves = [(e["actor"], e["detail"]["from"], e["detail"]["to"]) for e in audit["events"]]
    assert moves == [
        ("ada", "operational", "retired"),
        ("olli", "draining", "operational"),
        ("olli", "operational", "draining"),
    ]
