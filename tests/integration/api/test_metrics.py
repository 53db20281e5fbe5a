"""``GET /metrics``: Prometheus's text format, with the figures the database holds."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy import func, select

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Allocation, Factory, Job
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"
SCRAPE = "scrape-secret-0123456789"


@pytest.fixture
def metrics_api(db: Database, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data", local_gpus_per_site=2, metrics_token=SecretStr(SCRAPE)
    )
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        yield api


def _scrape(api: TestClient, token: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _by(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> dict:  # type: ignore[type-arg]
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_metrics_hold_the_databases_figures(
    db: Database, metrics_api: TestClient, operator: Person, admin: Person, tmp_path: Path
) -> None:
    api = metrics_api
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    code, _ = award(api, anna, operator, hours=100)
    quick = spec(code, [PY, "-c", "print('ok')"])
    ids = [ok(api.post(f"{API}/jobs", headers=anna.headers, json=quick), 201)["id"]]
    ids.append(ok(api.post(f"{API}/jobs", headers=anna.headers, json=quick), 201)["id"])
    settings = Settings(data_dir=tmp_path / "data", local_gpus_per_site=2)
    runner = AgentRunner(settings, db)

    def ended() -> bool:
        states = {ok(api.get(f"{API}/jobs/{i}", headers=anna.headers))["state"] for i in ids}
        return states == {"completed"}

    run_until(runner, ended)
    waiting = spec(code, [PY, "-c", "print('later')"], resources={"gpus_per_node": 2})
    ok(api.post(f"{API}/jobs", headers=anna.headers, json=waiting), 201)  # placed, not run

    samples = _scrape(api, admin.token)
    with db.session() as s:
        names = {i: n for i, n in s.execute(select(Factory.id, Factory.name))}
        counts = {
            (("factory", names[fid] if fid else "none"), ("state", state)): n
            for state, fid, n in s.execute(
                select(Job.state, Job.factory_id, func.count()).group_by(Job.state, Job.factory_id)
            )
        }
        granted = s.execute(select(func.sum(Allocation.granted_milli))).scalar()
        used = s.execute(select(func.sum(Allocation.used_milli))).scalar()
    assert _by(samples, "aif_jobs") == counts
    assert counts[(("factory", "LUMI AIF"), ("state", "completed"))] == 2
    assert _by(samples, "aif_job_submissions_total") == {(("mode", "PG"), ("project", code)): 3}
    assert samples[("aif_handover_latency_seconds_count", ())] == 2  # the third waits
    assert samples[("aif_handover_latency_seconds_sum", ())] > 0

    ledger = _by(samples, "aif_ledger_granted_gpu_hours")
    assert Decimal(str(sum(ledger.values()))) == Decimal(granted) / 1000
    assert {dict(k)["funding"] for k in ledger} == {"digital_europe", "national", "commercial"}
    lumi = sum(v for k, v in ledger.items() if ("factory", "LUMI AIF") in k)
    assert lumi == pytest.approx(100)
    used_total = sum(_by(samples, "aif_ledger_used_gpu_hours").values())
    assert used_total == pytest.approx(float(used) / 1000) and used_total > 0

    assert _by(samples, "aif_site_up")[(("factory", "LUMI AIF"),)] == 1
    assert (("factory", "LUMI AIF"),) in _by(samples, "aif_site_last_contact_age_seconds")
    holders = _by(samples, "aif_lease_holder")
    assert any(("lease", "site:LUMI AIF") in k for k in holders), holders
    assert any(("lease", "broker") in k for k in holders), holders
    assert _by(samples, "aif_lease_valid")
    assert samples[("aif_handover_backlog_oldest_seconds", ())] >= 0


def test_metrics_are_for_admins_and_the_scrape_token(
    metrics_api: TestClient, admin: Person, operator: Person, applicant: Person
) -> None:
    api = metrics_api
    anonymous = api.get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    wrong = api.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}x"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthenticated"
    refused = api.get("/metrics", headers=applicant.headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # an operator of one factory would read every factory's jobs and ledgers here
    one_factory = api.get("/metrics", headers=operator.headers)
    assert one_factory.status_code == 403 and "federation admins" in one_factory.text
    lumi_up = ("aif_site_up", (("factory", "LUMI AIF"),))
    assert lumi_up in _scrape(api, admin.token)
    assert lumi_up in _scrape(api, SCRAPE)
