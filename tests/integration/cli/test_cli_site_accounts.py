"""`aif admin site-account set | list | remove` over real HTTP."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.server import BackgroundServer
from aifactory.settings import Settings
from aifactory.testing.people import Person

runner = CliRunner()


def _aif(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_operators_map_and_remove_logins_from_the_cli(
    db: Database, settings: Settings, operator: Person, applicant: Person, tmp_path: Path
) -> None:
    with BackgroundServer(settings, db) as server:
        env = {"AIF_URL": server.url, "AIF_TOKEN": operator.token, "AIF_CONFIG_DIR": str(tmp_path)}
        as_anna = {**env, "AIF_TOKEN": applicant.token}
        mapped = _aif(env, "admin", "site-account", "set", "anna", "LUMI AIF", "akoski")
        mine = _aif(as_anna, "admin", "site-account", "list", "anna")
        refused = _aif(as_anna, "admin", "site-account", "set", "anna", "LUMI AIF", "x", code=1)
        bad = _aif(env, "admin", "site-account", "set", "anna", "LUMI AIF", "root", code=1)
        removed = _aif(env, "admin", "site-account", "remove", "anna", "LUMI AIF")
        empty = _aif(as_anna, "admin", "site-account", "list", "anna")
    assert "anna runs jobs at LUMI AIF as akoski" in mapped
    assert "LUMI AIF" in mine and "akoski" in mine
    assert "manage_site_accounts needs one of" in refused
    assert "no person is mapped to root" in bad
    assert "anna has no site account at LUMI AIF any more" in removed
    assert "akoski" not in empty
