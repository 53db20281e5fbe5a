"""The access path from the command line, against a real API server on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import member_of
from aifactory.testing.jobs import BACKENDS, backend_database
from aifactory.testing.people import make_person
from aifactory.testing.proposals import SECTIONS, pdf_bytes

runner = CliRunner()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One server per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def envs(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, dict[str, str]]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cli-access"))
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        people = {
            "anna": member_of(db, "anna", "Nordic Tokens Oy"),
            "ops": make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")]),
            "eve": member_of(db, "eve", "Valley Corp", country="US"),
            "admin": make_person(db, "root", [(Role.FEDERATION_ADMIN, None)]),
            "rev": member_of(db, "rev", "Uni Reviewers", roles=[(Role.REVIEWER, None)]),
        }
        cfg = str(tmp_path_factory.mktemp("cfg"))
        with BackgroundServer(settings, db) as srv:
            yield {
                name: {"AIF_URL": srv.url, "AIF_TOKEN": p.token, "AIF_CONFIG_DIR": cfg}
                for name, p in people.items()
            }


def aif(env: dict[str, str], *args: str) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_startup_applies_is_assessed_and_sees_its_allocation(
    envs: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    anna, ops = envs["anna"], envs["ops"]
    out = aif(anna, "calls", "list", "--factory", "LUMI AIF", "--open")
    assert "lumi-aif-pg" in out and "Playground" in out
    out = aif(
        anna,
        "eligibility",
        "check",
        "--call",
        "lumi-aif-pg",
        "--org",
        "Nordic Tokens Oy",
        "--months",
        "1",
    )
    assert "eligible" in out and "FAIL" not in out
    out = aif(
        anna,
        "proposals",
        "create",
        "--call",
        "lumi-aif-pg",
        "--org",
        "Nordic Tokens Oy",
        "--title",
        "CLI model",
        "--gpu-hours",
        "500",
        "--months",
        "1",
        "--partition",
        "LUMI-AI/gpu",
    )
    proposal_id = out.split("draft proposal ")[1].split()[0]
    out = aif(anna, "proposals", "submit", proposal_id)
    assert "technical_assessment" in out and "Deadline" in out
    out = aif(ops, "assess", proposal_id, "--feasible", "--comment", "ok")
    assert "accepted" in out
    code = next(w for w in out.split() if w.startswith("EHPC-AIF-"))
    out = aif(anna, "projects", "show", code)
    assert "LUMI AIF: LUMI-AI/gpu" in out and "500" in out
    out = aif(ops, "report", "--by", "factory", "--csv", str(tmp_path / "u.csv"))
    assert "LUMI AIF" in out
    rows = list(csv.reader((tmp_path / "u.csv").open()))
    assert rows[1][0] == "LUMI AIF" and float(rows[1][2]) == 500


def test_ineligible_applicant_sees_each_failing_rule(envs: dict[str, dict[str, str]]) -> None:
    result = runner.invoke(
        app,
        ["eligibility", "check", "--call", "lumi-aif-pg", "--org", "Valley Corp"],
        env=envs["eve"],
    )
    assert result.exit_code == 1
    assert "not eligible" in result.output and "country_status" in result.output
    assert "FAIL" in result.output


def _sections_file(tmp_path: Path) -> Path:
    path = tmp_path / "proposal.yaml"
    path.write_text(yaml.safe_dump({"sections": SECTIONS}))
    return path


def test_peer_review_from_the_cli(envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    from aifactory.cli.main import app as cli

    anna, ops, admin = envs["anna"], envs["ops"], envs["admin"]
    out = aif(
        anna,
        "proposals",
        "create",
        "--call",
        "lumi-aif-fl",
        "--org",
        "Nordic Tokens Oy",
        "--title",
        "Reviewed",
        "--gpu-hours",
        "100",
        "--months",
        "1",
        "--partition",
        "LUMI-AI/gpu",
        "--kind",
        "commercial",
        "--from",
        str(_sections_file(tmp_path)),
    )
    pid = out.split("draft proposal ")[1].split()[0]
    pdf = tmp_path / "annex.pdf"
    pdf.write_bytes(pdf_bytes("technical annex"))
    assert "attached annex.pdf" in aif(anna, "proposals", "attach", pid, str(pdf))
    shown = aif(anna, "proposals", "show", pid)
    assert "Aino Virtanen" in shown and "Scaling evidence" in shown and "annex.pdf" in shown
    aif(anna, "proposals", "submit", pid)
    assert "accepted" in aif(ops, "assess", pid, "--feasible")
    bad = runner.invoke(cli, ["review", pid, "--score", "excellence"], env=envs["rev"])
    assert bad.exit_code == 1 and "criterion=number" in bad.output
    refused = runner.invoke(cli, ["assign-reviewer", pid, "rev"], env=admin)
    assert refused.exit_code == 1 and "is accepted" in refused.output
    listed = aif(admin, "proposals", "list")
    assert pid in listed and "Reviewed" in listed
