"""`aif orgs`, `aif projects invite|invitations|remove-member`, `aif invitations accept` over
real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import make_person

runner = CliRunner()


def _aif(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


@pytest.mark.parametrize("backend", ["sqlite"])  # the API tests cover PostgreSQL
def test_people_register_organisations_and_invite_from_the_cli(
    db: Database, settings: Settings, tmp_path: Path
) -> None:
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    carl = make_person(db, "carl", [(Role.APPLICANT, None)])
    olli = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    spec = tmp_path / "org.yaml"
    spec.write_text(
        "type: startup\ncountry_code: FI\nenterprise_links:\n"
        "  - {name: Parent Group, share: 0.8, staff: 900, turnover_eur: 300000000,"
        " balance_sheet_eur: 200000000}\n"
    )
    with BackgroundServer(settings, db) as server:
        env = {"AIF_URL": server.url, "AIF_TOKEN": carl.token, "AIF_CONFIG_DIR": str(tmp_path)}
        as_anna = {**env, "AIF_TOKEN": anna.token}
        made = _aif(env, "orgs", "create", "Carl Labs", "--file", str(spec), "--staff", "1,200")
        small = _aif(
            env, "orgs", "create", "Carl Two", "--type", "sme", "--country", "FI",
            "--staff", "40", "--turnover", "9 000 000", "--link", "Holder:30%:10:1,000:500",
        )  # fmt: skip
        bad = _aif(env, "orgs", "create", "X", "--type", "sme", "--country", "ZZ", code=1)
        listed = json.loads(_aif(env, "orgs", "list", "--json"))
        shown = _aif(env, "orgs", "show", str(listed[0]["id"]))
        with httpx.Client(base_url=server.url) as http:
            code, _ = award(http, anna, olli)  # type: ignore[arg-type]
        invited = json.loads(_aif(as_anna, "projects", "invite", code, "carl@x.eu", "--json"))
        joined = _aif(env, "invitations", "accept", invited["url"])
        table = _aif(as_anna, "projects", "invitations", code)
        removed = _aif(as_anna, "projects", "remove-member", code, "carl")
    assert "SME test: not an SME" in made
    assert "registered organisation" in small and "SME test: small enterprise" in small
    assert "country_code: unknown country 'ZZ'" in bad
    assert [o["name"] for o in listed] == ["Carl Labs", "Carl Two"]
    assert listed[0]["enterprise_links"][0]["relation"] == "linked"
    assert listed[1]["sme"]["size"] == "small"
    assert "Parent Group" in shown and "80 %" in shown
    assert invited["status"] == "pending" and invited["url"].startswith(server.url)
    assert f"you joined {code}" in joined
    assert "carl@x.eu" in table and "accepted" in table
    assert "carl removed" in removed
