"""GET /planning/snapshot (the registry as `aif plan` reads it) and /planning/history (jobs that
ran, staff only), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from aifactory.db.engine import Database
from aifactory.db.models import Job
from aifactory.db.types import utcnow
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import spec
from aifactory.testing.people import Person


def test_the_snapshot_lists_every_factory_with_its_shares_and_partitions(
    api: TestClient, applicant: Person
) -> None:
    snap = ok(api.get("/api/v1/planning/snapshot", headers=applicant.headers))
    lumi = next(f for f in snap["factories"] if f["name"] == "LUMI AIF")
    assert snap["snapshot"] == 1 and len(snap["factories"]) == 7
    assert lumi["capacity_split"] == {"eu": 0.5, "national": 0.4, "commercial": 0.1}
    part = lumi["systems"][0]["partitions"][0]
    assert (part["name"], part["nodes"], part["gpus_per_node"]) == ("gpu", 128, 8)


def test_the_history_holds_jobs_that_ran_oldest_first_for_staff_only(
    db: Database, api: TestClient, admin: Person, operator: Person
) -> None:
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    code, _ = award(api, anna, operator)
    ids = [
        ok(api.post("/api/v1/jobs", headers=anna.headers, json=spec(code, ["true"])), 201)["id"]
        for _ in range(3)
    ]
    start = utcnow()
    with db.session() as s:  # two ran (the third never started)
        for i, job_id in enumerate(ids[:2]):
            began = start + timedelta(minutes=i)
            ran = update(Job).where(Job.id == job_id)
            s.execute(ran.values(started_at=began, ended_at=began + timedelta(seconds=90)))
    history = ok(api.get("/api/v1/planning/history", headers=operator.headers))
    assert [j["id"] for j in history["jobs"]] == ids[:2]
    assert {j["partition"] for j in history["jobs"]} == {"LUMI AIF/LUMI-AI/gpu"}
    assert history["jobs"][0]["project"] == code and history["jobs"][0]["gpus"] == 1
    assert history["truncated"] is False
    one = ok(api.get("/api/v1/planning/history?limit=1", headers=admin.headers))
    assert [j["id"] for j in one["jobs"]] == [ids[1]] and one["truncated"] is True
    later = (start + timedelta(days=2)).date().isoformat()
    assert (
        ok(api.get(f"/api/v1/planning/history?since={later}", headers=admin.headers))["jobs"] == []
    )
    refused = api.get("/api/v1/planning/history", headers=anna.headers)
    assert refused.status_code == 403 and "factory operators" in refused.text
