"""Role x endpoint: every endpoint allows exactly the roles the policy names, denials included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.testing.people import make_person

ALL = {"applicant", "project_member", "pi", "reviewer", "op_lumi", "op_bsc", "admin"}
ADMIN = {"admin"}
LUMI_EDITORS = {"admin", "op_lumi"}
PEOPLE: dict[str, list[tuple[Role, str | None]]] = {
    "applicant": [(Role.APPLICANT, None)],
    "project_member": [(Role.PROJECT_MEMBER, None)],
    "pi": [(Role.PI, None)],
    "reviewer": [(Role.REVIEWER, None)],
    "op_lumi": [(Role.FACTORY_OPERATOR, "LUMI AIF")],
    "op_bsc": [(Role.FACTORY_OPERATOR, "BSC AIF")],
    "admin": [(Role.FEDERATION_ADMIN, None)],
}
LUMI = "/api/v1/factories/LUMI%20AIF"
Body = Callable[[str], Any]


def _factory(who: str) -> dict[str, Any]:
    return {"name": f"New {who}", "hosting_entity": "X", "city": "Y", "country": "CY"}


def _system(who: str) -> dict[str, Any]:
    return {"name": f"sys-{who}", "kind": "new"}


def _partition(who: str) -> dict[str, Any]:
    return {
        "name": f"p-{who}".replace("_", "-"),
        "gpu_model": "H100",
        "nodes": 2,
        "gpus_per_node": 4,
        "gpu_memory_gb": 80,
    }


# (method, path, body maker, roles allowed; None = also anonymous)
MATRIX: list[tuple[str, str, Body | None, set[str] | None]] = [
    ("GET", "/api/v1/health", None, None),
    ("GET", "/api/v1/federation/summary", None, ALL),
    ("GET", "/api/v1/countries", None, ALL),
    (
        "POST",
        "/api/v1/countries",
        lambda w: {
            "code": "Q" + "ABCDEFGH"[sorted([*ALL, "anonymous"]).index(w)],
            "name": f"Land {w}",
            "status": "other",
        },
        ADMIN,
    ),
    ("GET", "/api/v1/factories", None, ALL),
    ("GET", LUMI, None, ALL),
    ("POST", "/api/v1/factories", _factory, ADMIN),
    ("PATCH", LUMI, lambda w: {"city": f"Kajaani {w}"}, LUMI_EDITORS),
    ("POST", f"{LUMI}/systems", _system, LUMI_EDITORS),
    ("POST", f"{LUMI}/systems/LUMI-AI/partitions", _partition, LUMI_EDITORS),
    ("PATCH", f"{LUMI}/systems/LUMI-AI/partitions/gpu", lambda w: {"nodes": 100}, LUMI_EDITORS),
    ("GET", "/api/v1/me", None, ALL),
    ("GET", "/api/v1/users", None, ADMIN),
    (
        "POST",
        "/api/v1/users",
        lambda w: {"username": f"new-{w}".replace("_", "-"), "email": f"{w}@x.eu"},
        ADMIN,
    ),
    ("GET", "/api/v1/users/zed", None, ADMIN),
    ("POST", "/api/v1/users/zed/roles", lambda w: {"role": "reviewer"}, ADMIN),
    ("POST", "/api/v1/users/zed/memberships", lambda w: {"organisation": "Zed Labs"}, ADMIN),
    ("PUT", "/api/v1/users/zed/password", lambda w: {"password": "correct horse battery"}, ADMIN),
    ("GET", "/api/v1/organisations", None, ADMIN),
    (
        "POST",
        "/api/v1/organisations",
        lambda w: {"name": f"Org {w}", "type": "startup", "country_code": "FI"},
        ADMIN,
    ),
    ("GET", "/api/v1/tokens", None, ALL),
    ("POST", "/api/v1/tokens", lambda w: {"name": "mine"}, ALL),
    ("POST", "/api/v1/tokens", lambda w: {"name": "for zed", "username": "zed"}, ADMIN),
    ("GET", "/api/v1/access-modes", None, ALL),
    ("GET", "/api/v1/calls", None, ALL),
    ("GET", "/api/v1/calls/lumi-aif-pg", None, ALL),
    ("POST", "/api/v1/calls/lumi-aif-ls/decisions", lambda w: {"cutoff": "2026-12-01"}, ADMIN),
    (
        "POST",
        "/api/v1/eligibility/check",
        lambda w: {
            "call_id": "lumi-aif-pg",
            "organisation": "Zed Labs",
            "research_kind": "open_rd",
        },
        ADMIN,
    ),
    (
        "POST",
        "/api/v1/proposals",
        lambda w: {
            "call_id": "lumi-aif-pg",
            "title": f"P {w}",
            "organisation": "Zed Labs",
            "research_kind": "open_rd",
            "gpu_hours": 10,
            "duration_months": 1,
        },
        ADMIN,
    ),
    ("GET", "/api/v1/proposals", None, ALL),
    ("GET", "/api/v1/projects", None, ALL),
    ("GET", "/api/v1/reports/usage", None, ALL),
    ("GET", "/api/v1/reports/usage.csv", None, ALL),
    ("POST", "/api/v1/allocations/expire", None, ADMIN),
    ("GET", "/api/v1/status", None, {"admin", "op_lumi", "op_bsc"}),
]


def test_every_endpoint_allows_exactly_its_roles(db: Database, api: TestClient) -> None:
    people = {
        name: make_person(db, name.replace("_", "-"), roles) for name, roles in PEOPLE.items()
    }
    make_person(db, "zed", [(Role.APPLICANT, None)])
    admin_headers = people["admin"].headers
    api.post(
        "/api/v1/organisations",
        headers=admin_headers,
        json={"name": "Zed Labs", "type": "startup", "country_code": "FI"},
    )
    wrong: list[str] = []
    for method, path, body, allowed in MATRIX:
        callers: dict[str, dict[str, str]] = {"anonymous": {}}
        callers.update({name: p.headers for name, p in people.items()})
        for who, headers in callers.items():
            json = body(who) if body else None
            status = api.request(method, path, headers=headers, json=json).status_code
            expected_ok = allowed is None or who in allowed
            expected = "2xx" if expected_ok else ("401" if who == "anonymous" else "403")
            got = "2xx" if 200 <= status < 300 else str(status)
            if got != expected:
                wrong.append(f"{method} {path} as {who}: expected {expected}, got {status}")
    assert wrong == []


def test_revoking_a_token_is_for_its_owner_or_an_admin(db: Database, api: TestClient) -> None:
    owner = make_person(db, "owner", [(Role.APPLICANT, None)])
    other = make_person(db, "other", [(Role.REVIEWER, None)])
    admin = make_person(db, "boss", [(Role.FEDERATION_ADMIN, None)])
    (token,) = api.get("/api/v1/tokens", headers=owner.headers).json()
    assert api.delete(f"/api/v1/tokens/{token['id']}", headers=other.headers).status_code == 403
    assert api.delete(f"/api/v1/tokens/{token['id']}").status_code == 401
    assert api.delete(f"/api/v1/tokens/{token['id']}", headers=admin.headers).status_code == 200
    assert api.get("/api/v1/me", headers=owner.headers).status_code == 401
