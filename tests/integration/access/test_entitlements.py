"""Multi-site entitlements through the API (SQLite, PostgreSQL): an award creates one allocation
per requested partition, and a federation allocation where the call allows one; jobs may run
at every entitled site; what a call allows is refused with the field and the rule."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from aifactory.agents.runner import AgentRunner
from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.db.models import Factory, Job, Partition, System
from aifactory.domain.access_modes import EntitlementLimits
from aifactory.domain.enums import OrganisationType, Role
from aifactory.domain.ledger import usage_milli
from aifactory.server import BackgroundServer
from aifactory.services import entitlements, site_accounts
from aifactory.settings import Settings
from aifactory.testing.access import at, member_of, ok, set_clock
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person, make_person
from aifactory.testing.proposals import SECTIONS

API = "/api/v1"
ORG = "Big Motors AG"
LUMI, MELUXINA = "LUMI-AI/gpu", "MeluXina-AI/gpu"
LUMI_SITE, MELUXINA_SITE = "LUMI AIF/LUMI-AI/gpu", "Meluxina-AI/MeluXina-AI/gpu"
DECIDED = at("2026-12-02T10:00")  # the day after the 1 December cut-off


def _row(partition: str, hours: int) -> dict[str, str]:
    return {"partition": partition, "gpu_hours": str(hours), "justification": "training"}


def _body(call: str, rows: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "call_id": call,
        "title": "Foundation model for driving",
        "organisation": ORG,
        "research_kind": "open_rd",
        "duration_months": 6 if call.endswith("-ls") else 3,
        "pi_contract_end": "2028-12-31",
        "resources": rows,
        "sections": SECTIONS,
    }


@pytest.fixture
def people(db: Database, api: TestClient) -> dict[str, Person]:
    set_clock(api, at("2026-11-25T09:00"))
    boss = member_of(db, "boss", ORG, OrganisationType.LARGE_ENTERPRISE, "DE", staff=5000)
    return {
        "boss": boss,
        "op": make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")]),
        "admin": make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)]),
    }


def _awarded(
    api: TestClient, people: dict[str, Person], rows: list[dict[str, str]], **assessed: Any
) -> dict[str, Any]:
    """A Large Scale proposal at LUMI AIF through assessment and decision: its project."""
    boss = people["boss"]
    p = ok(api.post(f"{API}/proposals", headers=boss.headers, json=_body("lumi-aif-ls", rows)), 201)
    ok(api.post(f"{API}/proposals/{p['id']}/submit", headers=boss.headers))
    verdict = {"feasible": True, **assessed}
    url = f"{API}/proposals/{p['id']}/assessment"
    ok(api.post(url, headers=people["op"].headers, json=verdict))
    set_clock(api, DECIDED)
    url = f"{API}/proposals/{p['id']}/decision"
    done = ok(api.post(url, headers=people["admin"].headers, json={"accept": True}))
    return ok(api.get(f"{API}/projects/{done['project_code']}", headers=boss.headers))  # type: ignore[no-any-return]


def _refusals(response: Any) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(d["field"], d["rule"]) for d in response.json()["error"]["details"]}


def test_an_award_at_two_factories_makes_two_allocations_each_with_its_grant_and_split(
    db: Database, api: TestClient, people: dict[str, Person]
) -> None:
    rows = [_row(LUMI, 60000), _row(MELUXINA, 40000)]
    project = _awarded(api, people, rows, gpu_hours="80000")  # assessed: shared 60:40
    got = [
        (a["scope"], a["factory"], f"{a['system']}/{a['partition']}", Decimal(a["granted"]))
        for a in project["allocations"]
    ]
    assert got == [
        ("partition", "LUMI AIF", LUMI, Decimal(48000)),
        ("partition", "Meluxina-AI", MELUXINA, Decimal(32000)),
    ]
    assert Decimal(project["total"]["granted"]) == Decimal(80000)
    assert Decimal(project["total"]["remaining"]) == Decimal(80000)
    splits = [{k: Decimal(v) for k, v in a["funding"].items()} for a in project["allocations"]]
    assert splits[0] == {
        "eu": Decimal("0.5"),
        "national": Decimal("0.4"),
        "commercial": Decimal("0.1"),
    }
    assert splits[1] == {
        "eu": Decimal("0.5"),
        "national": Decimal("0.3"),
        "commercial": Decimal("0.2"),
    }
    boss = people["boss"]
    for a in project["allocations"]:
        entries = ok(api.get(f"{API}/allocations/{a['id']}/ledger", headers=boss.headers))
        assert [(e["kind"], Decimal(e["gpu_hours"])) for e in entries] == [
            ("grant", Decimal(a["granted"]))
        ]
    body = spec(project["code"], [PY, "-c", "pass"])
    job = ok(api.post(f"{API}/jobs", headers=boss.headers, json=body), 201)
    why = ok(api.get(f"{API}/jobs/{job['id']}/why", headers=boss.headers))
    assert set(why["ranked"]) == {LUMI_SITE, MELUXINA_SITE}  # either site, ranked
    assert why["chosen"] in {LUMI_SITE, MELUXINA_SITE}


def test_a_federation_allocation_is_one_budget_at_every_admitting_site(
    db: Database, api: TestClient, people: dict[str, Person], settings: Settings
) -> None:
    project = _awarded(api, people, [_row(LUMI, 60000), _row("federation", 10000)])
    mine, shared = project["allocations"]
    assert mine["scope"] == "partition" and mine["factory"] == "LUMI AIF"
    assert (shared["scope"], shared["factory"], shared["partition"]) == (
        "federation",
        "federation",
        "federation",
    )
    assert Decimal(shared["granted"]) == 10000 and Decimal(project["total"]["granted"]) == 70000
    boss = people["boss"]
    ids = {}
    for model, nodes in (("H200", 1), ("GB200", 2)):  # 8 GPUs: only the federation allocation
        sized = {"gpu_model": model, "nodes": nodes, "gpus_per_node": 8 // nodes}
        body = spec(project["code"], [PY, "-c", "import time; time.sleep(2)"], resources=sized)
        job = ok(api.post(f"{API}/jobs", headers=boss.headers, json=body), 201)
        why = ok(api.get(f"{API}/jobs/{job['id']}/why", headers=boss.headers))
        assert LUMI_SITE in why["rejected"]  # its own allocation there: the wrong GPUs
        assert len(why["ranked"]) >= 1 and LUMI_SITE not in why["ranked"]
        ids[model] = job
    assert ids["H200"]["factory"] in {"Meluxina-AI", "MIMER"}
    assert ids["GB200"]["factory"] == "IT4LIA"
    with db.session() as s:
        placed = {j.id: j.allocation_id for j in s.scalars(select(Job))}
    assert set(placed.values()) == {shared["id"]}
    after = ok(api.get(f"{API}/allocations/{shared['id']}", headers=boss.headers))
    # one minute on 8 GPUs, reserved by each site's charge factor: 1.2 and 1.5
    held = Decimal(after["reserved"])
    assert held == Decimal("0.160") + Decimal("0.200")
    assert Decimal(after["remaining"]) == Decimal(10000) - held
    runner = AgentRunner(settings, db)
    done = {}

    def ended() -> bool:
        for model, job in ids.items():
            done[model] = ok(api.get(f"{API}/jobs/{job['id']}", headers=boss.headers))
        return all(j["state"] == "completed" for j in done.values())

    run_until(runner, ended)
    charged = Decimal(0)
    for model, factor in (("H200", "1.2"), ("GB200", "1.5")):  # used hours x charge factor
        (attempt,) = done[model]["attempts"]
        used = usage_milli(8, timedelta(seconds=attempt["elapsed_s"]), Decimal(factor))
        assert Decimal(done[model]["charged_gpu_hours"]) * 1000 == used
        charged += Decimal(used) / 1000
    final = ok(api.get(f"{API}/allocations/{shared['id']}", headers=boss.headers))
    assert Decimal(final["used"]) == charged and Decimal(final["reserved"]) == 0
    assert Decimal(final["remaining"]) == Decimal(10000) - charged
    with BackgroundServer(settings, db) as srv:
        cli = {"AIF_URL": srv.url, "AIF_TOKEN": boss.token, "COLUMNS": "250"}
        cli["AIF_CONFIG_DIR"] = str(settings.data_dir / "cli")
        shown = CliRunner().invoke(app, ["projects", "show", project["code"]], env=cli)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert any("LUMI AIF: LUMI-AI/gpu" in line and "60,000" in line for line in lines)
    assert any("federation: any factory admitting" in line and "10,000" in line for line in lines)
    assert any("project total" in line and "70,000" in line for line in lines), shown.output


def test_what_a_call_allows_is_refused_naming_the_field_and_rule(
    db: Database, api: TestClient, people: dict[str, Person], monkeypatch: pytest.MonkeyPatch
) -> None:
    boss = people["boss"]
    start = member_of(db, "sam", "Tiny Tokens Oy")
    fl = _body("bsc-aif-fl", [_row("MareNostrum 5 AI/llm-train", 100), _row(LUMI, 100)])
    fl["organisation"] = "Tiny Tokens Oy"
    assert _refusals(api.post(f"{API}/proposals", headers=start.headers, json=fl)) == {
        ("resources.1.partition", "call_factory"),
        ("resources", "max_systems"),
        ("resources", "max_factories"),
    }
    fl["resources"] = [_row("MareNostrum 5 AI/llm-train", 100), _row("federation", 100)]
    assert _refusals(api.post(f"{API}/proposals", headers=start.headers, json=fl)) == {
        ("resources.1.partition", "federation_allocation")
    }
    five = ["LUMI-AI/gpu", "MeluXina-AI/gpu", "MIMER/gpu", "IT4LIA AI/gb200"]
    rows = [_row(p, 20000) for p in [*five, "MareNostrum 5 AI/llm-train"]]
    ls = _body("lumi-aif-ls", rows)
    assert _refusals(api.post(f"{API}/proposals", headers=boss.headers, json=ls)) == {
        ("resources", "max_systems"),
        ("resources", "max_factories"),
    }
    ls["resources"] = [_row(LUMI, 60000), _row(MELUXINA, 1000)]
    draft = ok(api.post(f"{API}/proposals", headers=boss.headers, json=ls), 201)
    one = EntitlementLimits(max_systems=1, max_factories=1)
    monkeypatch.setattr(entitlements, "effective_entitlements", lambda call, mode: one)
    refused = api.post(f"{API}/proposals/{draft['id']}/submit", headers=boss.headers)
    assert _refusals(refused) == {
        ("resources.1.partition", "call_factory"),
        ("resources", "max_systems"),
        ("resources", "max_factories"),
    }


def test_a_federation_allocation_gives_the_project_a_site_budget_at_every_admitting_factory(
    db: Database, api: TestClient, people: dict[str, Person]
) -> None:
    """Slurm sites take their project accounts' budgets from here (the site agent's account
    sync): the federation allocation counts at every admitting factory, its partition
    allocation only at its own."""
    project = _awarded(api, people, [_row(LUMI, 60000), _row("federation", 10000)])
    code = project["code"]
    with db.session() as s:
        ids = {name: fid for name, fid in s.execute(select(Factory.name, Factory.id))}
        lumi = site_accounts.project_budgets(s, ids["LUMI AIF"])
        mimer = site_accounts.project_budgets(s, ids["MIMER"])
        cheapest = s.scalar(
            select(func.min(Partition.charge_factor))
            .join(System, System.id == Partition.system_id)
            .where(System.factory_id == ids["MIMER"])
        )
    assert mimer[code] == pytest.approx(10000 / cheapest)
    assert lumi[code] > 60000  # its own allocation plus the federation's hours
