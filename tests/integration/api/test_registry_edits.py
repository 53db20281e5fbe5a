"""Operators add and change factories, systems and partitions through the API, validated."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from aifactory.testing.people import Person

LUMI = "/api/v1/factories/LUMI%20AIF"
NEW = {
    "name": "Slovak AIF",
    "hosting_entity": "CSC Bratislava",
    "city": "Bratislava",
    "country": "SK",
    "members": ["HU"],
    "status": "selected",
    "systems": [
        {
            "name": "Perun",
            "kind": "new",
            "deployment_year": 2026,
            "partitions": [
                {
                    "name": "gpu",
                    "gpu_model": "H200",
                    "nodes": 8,
                    "gpus_per_node": 8,
                    "gpu_memory_gb": 141,
                }
            ],
        }
    ],
}


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


def test_admin_adds_a_factory_and_totals_follow(api: TestClient, admin: Person) -> None:
    created = api.post("/api/v1/factories", json=NEW, headers=admin.headers)
    assert created.status_code == 201, created.text
    assert created.json()["total_gpus"] == 64
    summary = api.get("/api/v1/federation/summary", headers=admin.headers).json()
    assert summary["factories"] == 8
    assert summary["countries"] == 19
    assert summary["new_systems"] == 6


def test_duplicate_factory_is_a_conflict_and_changes_nothing(
    api: TestClient, admin: Person
) -> None:
    body = {**NEW, "name": "LUMI AIF", "systems": []}
    response = api.post("/api/v1/factories", json=body, headers=admin.headers)
    assert response.status_code == 409
    assert _error(response)["code"] == "conflict"
    lumi = api.get(LUMI, headers=admin.headers).json()
    assert lumi["hosting_entity"] == "CSC"


def test_unknown_country_is_rejected_naming_the_field(api: TestClient, admin: Person) -> None:
    response = api.post("/api/v1/factories", json={**NEW, "members": ["XX"]}, headers=admin.headers)
    assert response.status_code == 422
    err = _error(response)
    assert err["details"][0]["field"] == "country"
    assert "XX" in err["details"][0]["message"]
    assert api.get("/api/v1/factories/Slovak%20AIF", headers=admin.headers).status_code == 404


def test_negative_capacity_is_a_422_naming_the_field(api: TestClient, operator: Person) -> None:
    path = f"{LUMI}/systems/LUMI-AI/partitions/gpu"
    response = api.patch(path, json={"nodes": -1}, headers=operator.headers)
    assert response.status_code == 422
    assert _error(response)["details"][0]["field"] == "nodes"
    assert (
        api.get(LUMI, headers=operator.headers).json()["systems"][0]["partitions"][0]["nodes"]
        == 128
    )


def test_operator_edits_own_factory_but_not_another(api: TestClient, operator: Person) -> None:
    path = f"{LUMI}/systems/LUMI-AI/partitions/gpu"
    response = api.patch(path, json={"nodes": 100, "charge_factor": 1.1}, headers=operator.headers)
    assert response.status_code == 200
    assert response.json()["nodes"] == 100
    other = "/api/v1/factories/Pharos/systems/DAEDALUS/partitions/gpu"
    denied = api.patch(other, json={"nodes": 1}, headers=operator.headers)
    assert denied.status_code == 403
    assert _error(denied)["code"] == "forbidden"


def test_duplicate_partition_and_system_names_conflict(api: TestClient, operator: Person) -> None:
    part = {"name": "gpu", "gpu_model": "X", "nodes": 1, "gpus_per_node": 1, "gpu_memory_gb": 1}
    dup = api.post(f"{LUMI}/systems/LUMI-AI/partitions", json=part, headers=operator.headers)
    assert dup.status_code == 409
    system = api.post(
        f"{LUMI}/systems", json={"name": "MIMER", "kind": "new"}, headers=operator.headers
    )
    assert system.status_code == 409


def test_capacity_split_must_sum_to_one(api: TestClient, operator: Person) -> None:
    bad = {"capacity_split": {"eu": 0.5, "national": 0.6, "commercial": 0.0}}
    response = api.patch(LUMI, json=bad, headers=operator.headers)
    assert response.status_code == 422
    assert "sum to 1" in response.text
    good = {
        "capacity_split": {"eu": 0.5, "national": 0.3, "commercial": 0.2},
        "status": "operational",
    }
    ok = api.patch(LUMI, json=good, headers=operator.headers)
    assert ok.status_code == 200
    assert ok.json()["capacity_split"]["commercial"] == 0.2


def test_unknown_factory_is_404_in_the_error_shape(api: TestClient, admin: Person) -> None:
    response = api.get("/api/v1/factories/Atlantis", headers=admin.headers)
    assert response.status_code == 404
    assert _error(response) == {
        "code": "not_found",
        "message": "factory 'Atlantis' not found",
        "details": [],
    }
