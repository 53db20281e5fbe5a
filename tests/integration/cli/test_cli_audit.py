"""`aif admin audit | lockouts | unlock` and `aif admin set-password` over real HTTP."""

from __future__ import annotations

import json

import httpx
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.db.engine import Database
from aifactory.server import BackgroundServer
from aifactory.services import sessions
from aifactory.settings import Settings
from aifactory.testing.people import Person

runner = CliRunner()
PASSWORD = "correct horse battery staple"


def _aif(env: dict[str, str], *args: str, stdin: str | None = None, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env, input=stdin)
    assert result.exit_code == code, result.output
    return result.output


def test_admins_read_the_audit_log_and_lift_lockouts_from_the_cli(
    db: Database, settings: Settings, applicant: Person, admin: Person, tmp_path: object
) -> None:
    with db.session() as s:
        sessions.set_password(s, "anna", PASSWORD)
    with BackgroundServer(settings, db) as server:
        env = {"AIF_URL": server.url, "AIF_TOKEN": admin.token, "AIF_CONFIG_DIR": str(tmp_path)}
        as_anna = {**env, "AIF_TOKEN": applicant.token}
        for _ in range(settings.auth_account_failures):
            httpx.put(
                f"{server.url}/api/v1/users/anna/password",
                json={"password": "a new long passphrase", "current_password": "wrong guess"},
                headers=applicant.headers,
            )
        page = json.loads(_aif(env, "admin", "audit", "--action", "password_set", "--json"))
        events = page["events"]
        locks = _aif(env, "admin", "lockouts")
        refused = _aif(as_anna, "admin", "audit", code=1)
        unlocked = _aif(env, "admin", "unlock", "user:anna")
        # Changing your own password asks for the current one, then works.
        changed = _aif(
            as_anna,
            "admin",
            "set-password",
            "anna",
            stdin=f"a new long passphrase\na new long passphrase\n{PASSWORD}\n",
        )
        table = _aif(env, "admin", "audit", "--actor", "anna")
    failed = [e for e in events if e["outcome"] == "failed"]
    assert len(failed) == settings.auth_account_failures
    assert {e["actor"] for e in failed} == {"anna"}
    assert [e["actor"] for e in events if e["outcome"] == "ok"] == ["system"]  # the test's own
    assert "user:anna" in locks
    assert "federation admins" in refused
    assert "user:anna unlocked" in unlocked
    assert "Current password" in changed and "password of anna set" in changed
    assert "password_set" in table and "ok" in table
