"""Bad job specs get a 4xx naming the problem; nothing is stored or started."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Job
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, spec
from aifactory.testing.people import Person

API = "/api/v1"


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict[str, Any]]:
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator, hours=1000)
        yield {"api": api, "anna": anna, "code": code, "db": db}


def _count(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(Job)) or 0)


CASES: list[tuple[dict[str, Any], int, str, str]] = [
    ({"project": "EHPC-AIF-2026PG11-9999"}, 422, "project", "your_project"),
    ({"resources": {"nodes": 0}}, 422, "resources.nodes", "greater_than_equal"),
    ({"resources": {"gpus_per_node": -1}}, 422, "resources.gpus_per_node", "greater_than_equal"),
    ({"resources": {"time_limit": 0}}, 422, "resources.time_limit", "value_error"),
    ({"resources": {"time_limit": "soon"}}, 422, "resources.time_limit", "value_error"),
    ({"command": 42}, 422, "command", "value_error"),
    ({"command": {"run": "x"}}, 422, "command", "value_error"),
    ({"allowed_countries": ["XX"]}, 422, "allowed_countries", "known_country"),
    ({"allowed_countries": ["fi"]}, 422, "allowed_countries.0", "string_pattern_mismatch"),
    ({"name": "bad name; rm -rf /"}, 422, "name", "string_pattern_mismatch"),
    (
        {"environment": {"BAD-NAME": "x"}},
        422,
        "environment.BAD-NAME.[key]",
        "string_pattern_mismatch",
    ),
    ({"resources": {"time_limit": "72h"}}, 409, "LUMI AIF/LUMI-AI/gpu", "placement"),
    ({"resources": {"gpus_per_node": 16}}, 409, "LUMI AIF/LUMI-AI/gpu", "placement"),
    ({"resources": {"gpu_model": "H100"}}, 409, "LUMI AIF/LUMI-AI/gpu", "placement"),
    ({"allowed_countries": ["DE"]}, 409, "LUMI AIF/LUMI-AI/gpu", "placement"),
]


@pytest.mark.parametrize(("change", "status", "field", "rule"), CASES)
def test_bad_spec_is_refused_naming_the_field(
    env: dict[str, Any], change: dict[str, Any], status: int, field: str, rule: str
) -> None:
    base = spec(env["code"], [PY, "-c", "pass"])
    body = {**base, **change}
    if "resources" in change:
        body["resources"] = {**base["resources"], **change["resources"]}
    response = env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=body)
    assert response.status_code == status, response.text
    details = response.json()["error"]["details"]
    assert (details[0]["field"], details[0]["rule"]) == (field, rule), details
    assert _count(env["db"]) == 0


def test_non_member_cannot_submit_to_a_project(env: dict[str, Any], db: Database) -> None:
    eve = member_of(db, "eve", "Eve Labs")
    response = env["api"].post(f"{API}/jobs", headers=eve.headers, json=spec(env["code"], ["true"]))
    unknown = env["api"].post(f"{API}/jobs", headers=eve.headers, json=spec("EHPC-X", ["true"]))
    assert response.status_code == unknown.status_code == 422  # not hers, or none: one answer
    assert response.json()["error"]["details"] == [
        {**d, "message": d["message"].replace("EHPC-X", env["code"])}
        for d in unknown.json()["error"]["details"]
    ]
    assert _count(env["db"]) == 0


def test_spec_over_one_mib_is_refused_before_parsing(env: dict[str, Any]) -> None:
    body = spec(env["code"], ["true"], environment={"BIG": "x" * (1024 * 1024)})
    response = env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert _count(env["db"]) == 0


def test_other_projects_jobs_are_invisible(env: dict[str, Any], db: Database) -> None:
    job = ok(
        env["api"].post(
            f"{API}/jobs", headers=env["anna"].headers, json=spec(env["code"], ["true"])
        ),
        201,
    )
    eve = member_of(db, "eve", "Eve Labs")
    assert env["api"].get(f"{API}/jobs/{job['id']}", headers=eve.headers).status_code == 404
    assert env["api"].get(f"{API}/jobs", headers=eve.headers).json()["jobs"] == []


def test_an_unreachable_site_makes_fitting_jobs_wait_but_still_refuses_misfits(
    env: dict[str, Any], db: Database
) -> None:
    from aifactory.db.models import SiteStatus
    from aifactory.services.registry import factory_id

    with db.session() as s:
        s.add(SiteStatus(factory_id=factory_id(s, "LUMI AIF"), available=False, reason="down"))
    fits = ok(
        env["api"].post(
            f"{API}/jobs", headers=env["anna"].headers, json=spec(env["code"], ["true"])
        ),
        201,
    )
    assert fits["state"] == "pending"
    assert "waiting for LUMI AIF/LUMI-AI/gpu" in fits["reason"]
    misfit = spec(env["code"], ["true"], resources={"gpus_per_node": 16})
    response = env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=misfit)
    assert response.status_code == 409
    assert _count(env["db"]) == 1
