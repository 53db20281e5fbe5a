"""Honest placement: every entitled site with its verdict and an estimate from its real queue.

Local sites capped at 8 GPUs; only the web app runs (no site agent), so placed jobs keep their
GPUs and the queue stays as the test builds it. Seen through the API, ``aif jobs why`` and the
job's page in the portal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.db.models import Factory, Partition, SiteEstimate, System
from aifactory.db.types import utcnow
from aifactory.server import BackgroundServer, build_app
from aifactory.services import sessions
from aifactory.settings import Settings
from aifactory.testing.access import award, entitle, member_of, ok
from aifactory.testing.jobs import PY, spec
from aifactory.testing.people import Person

API = "/api/v1"
HOUR = 3600
LUMI, MIMER = "LUMI AIF/LUMI-AI/gpu", "MIMER/MIMER/gpu"
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict[str, Any]]:
    settings = settings.model_copy(update={"local_gpus_per_site": 8})
    with TestClient(build_app(settings, db), follow_redirects=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, first = award(api, anna, operator, hours=5000)
        yield {"api": api, "anna": anna, "code": code, "first": first, "db": db, "s": settings}


def _submit(env: dict[str, Any], limit_s: int, **extra: Any) -> dict[str, Any]:
    body = spec(
        env["code"],
        [PY, "-c", "pass"],
        resources={"gpus_per_node": 8, "time_limit": limit_s},
        **extra,
    )
    return ok(env["api"].post(f"{API}/jobs", headers=env["anna"].headers, json=body), 201)


def _why(env: dict[str, Any], job_id: int) -> dict[str, Any]:
    return ok(env["api"].get(f"{API}/jobs/{job_id}/why", headers=env["anna"].headers))


def _by_site(why: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["site"]: c for c in why["candidates"]}


def test_full_sites_show_an_estimate_from_their_queue_and_every_candidate(
    env: dict[str, Any],
) -> None:
    hold = _submit(env, 2 * HOUR)  # all 8 of LUMI's GPUs for up to 2 h
    assert hold["factory"] == "LUMI AIF"
    entitle(env["db"], env["first"], "MIMER")

    # LUMI is preferred, but it is full for 2 h (more than the tolerance): MIMER, free, wins.
    second = _submit(env, HOUR, prefer_sites=["LUMI AIF"])
    assert second["factory"] == "MIMER"
    sites = _by_site(_why(env, second["id"]))
    assert sites[MIMER]["verdict"] == "chosen"
    lumi = sites[LUMI]
    assert (lumi["verdict"], lumi["free_gpus"], lumi["total_gpus"]) == ("waits", 0, 8)
    assert lumi["preferred"] is True and lumi["basis"] == "queue"
    assert 2 * HOUR - 300 < lumi["est_start_s"] <= 2 * HOUR

    # Both full now: the job waits, and neither site says "now".
    third = _submit(env, HOUR)
    assert third["state"] == "pending"
    why = _why(env, third["id"])
    sites = _by_site(why)
    assert set(sites) == {LUMI, MIMER}
    assert [c["verdict"] for c in why["candidates"]] == ["waits", "waits"]
    assert why["candidates"][0]["site"] == MIMER  # it frees up first
    assert HOUR - 300 < sites[MIMER]["est_start_s"] <= HOUR
    assert 2 * HOUR - 300 < sites[LUMI]["est_start_s"] <= 2 * HOUR
    assert all(v > 0 for v in why["est_start_s"].values())

    # A fourth waits behind the third: its 8 GPU-hours are queued ahead at one of the sites.
    fourth = _submit(env, HOUR)
    ahead = _by_site(_why(env, fourth["id"]))
    assert sum(c["queued_gpu_hours"] for c in ahead.values()) == pytest.approx(8.0)

    # The CLI says the same, in words.
    with BackgroundServer(env["s"], env["db"]) as srv:
        cli = {"AIF_URL": srv.url, "AIF_TOKEN": env["anna"].token, "COLUMNS": "250"}
        cli["AIF_CONFIG_DIR"] = str(env["s"].data_dir / "cli")
        result = CliRunner().invoke(app, ["jobs", "why", str(third["id"])], env=cli)
    assert result.exit_code == 0, result.output
    assert "estimated start in 2 h (from the queue)" in result.output
    assert "0 of 8" in result.output
    assert "starts now" not in result.output

    # The job's page in the portal lists the same candidates.
    page = _portal_page(env, f"/jobs/{third['id']}")
    assert '<tr data-verdict="waits"><th scope="row">LUMI AIF/LUMI-AI/gpu' in page
    assert "<td>0 of 8</td>" in page
    assert "estimated start in 2 h (from the queue)" in page
    assert "starts now" not in page


def _portal_page(env: dict[str, Any], path: str) -> str:
    """Sign anna in through the portal's form and read one page."""
    web: TestClient = env["api"]
    with env["db"].session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    csrf = _CSRF.search(web.get("/login").text)
    assert csrf is not None
    form = {"csrf_token": csrf.group(1), "method": "password", "username": "anna"}
    signed = web.post("/login", data={**form, "password": PASSWORD, "next": "/"})
    assert signed.status_code == 303, signed.text
    return web.get(path).text


def test_a_preferred_site_wins_when_it_is_as_soon_as_the_others(env: dict[str, Any]) -> None:
    entitle(env["db"], env["first"], "MIMER")
    # Both free: LUMI is cheaper (charge factor 1.0 against 1.2), but MIMER is preferred.
    chosen = _submit(env, HOUR, prefer_sites=["MIMER/MIMER"])
    assert chosen["factory"] == "MIMER"
    assert _submit(env, HOUR)["factory"] == "LUMI AIF"  # no preference: the cheaper one


def _slurm_says(env: dict[str, Any], start_in_s: float, read_ago_s: float = 0.0) -> None:
    """What LUMI's site agent records when Slurm has a job pending there (started outside the
    federation, say), expected to start in ``start_in_s``, as it read ``read_ago_s`` ago."""
    now = utcnow()
    with env["db"].session() as s:
        factory_id, partition_id = s.execute(
            select(Factory.id, Partition.id)
            .join(System, System.factory_id == Factory.id)
            .join(Partition, Partition.system_id == System.id)
            .where(Factory.name == "LUMI AIF", System.name == "LUMI-AI", Partition.name == "gpu")
        ).one()
        row = s.get(SiteEstimate, partition_id) or SiteEstimate(partition_id=partition_id)
        row.factory_id, row.pending_jobs, row.jobs = factory_id, 1, {"7": 0}
        row.latest_start_at = now + timedelta(seconds=start_in_s)
        row.updated_at = now - timedelta(seconds=read_ago_s)
        s.add(row)


def test_the_broker_ranks_by_the_site_schedulers_own_estimate(env: dict[str, Any]) -> None:
    entitle(env["db"], env["first"], "MIMER")
    # The federation counts LUMI's 8 GPUs free, but its Slurm expects its pending job to start
    # in 2 h: MIMER, free and dearer, starts sooner.
    _slurm_says(env, 2 * HOUR)
    moved = _submit(env, HOUR)
    assert moved["factory"] == "MIMER"
    lumi = _by_site(_why(env, moved["id"]))[LUMI]
    assert (lumi["basis"], lumi["free_gpus"]) == ("slurm", 8)
    assert 2 * HOUR - 300 < lumi["est_start_s"] <= 2 * HOUR
    # An estimate the site agent stopped refreshing is not used: LUMI, the cheaper, wins again.
    _slurm_says(env, 2 * HOUR, read_ago_s=600)
    assert _submit(env, HOUR)["factory"] == "LUMI AIF"
