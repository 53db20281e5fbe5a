"""The `aif` CLI against a real API server on loopback, on SQLite and on PostgreSQL."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer, free_port
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.jobs import BACKENDS, backend_database
from aifactory.testing.people import Person, make_person

runner = CliRunner()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One server per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Person]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cli-data"))
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        admin = make_person(db, "root", [(Role.FEDERATION_ADMIN, None)])
        with BackgroundServer(settings, db) as srv:
            yield srv.url, admin


def aif(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = runner.invoke(app, args, env=env)
    return result.exit_code, result.output


@pytest.fixture
def env(server: tuple[str, Person], tmp_path: Path) -> dict[str, str]:
    url, admin = server
    return {"AIF_URL": url, "AIF_TOKEN": admin.token, "AIF_CONFIG_DIR": str(tmp_path / "cfg")}


def test_login_stores_the_token_readable_only_by_its_owner(
    server: tuple[str, Person], tmp_path: Path
) -> None:
    url, admin = server
    cfg = tmp_path / "cfg"
    code, out = aif(["login", "--url", url, "--token", admin.token], {"AIF_CONFIG_DIR": str(cfg)})
    assert code == 0, out
    assert "logged in as root" in out
    path = cfg / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    code, out = aif(["factories", "list"], {"AIF_CONFIG_DIR": str(cfg)})
    assert code == 0 and "LUMI AIF" in out


def test_login_with_a_bad_token_fails_cleanly_and_stores_nothing(
    server: tuple[str, Person], tmp_path: Path
) -> None:
    url, _ = server
    code, out = aif(
        ["login", "--url", url, "--token", "aif_wrong"], {"AIF_CONFIG_DIR": str(tmp_path)}
    )
    assert code == 1
    assert "invalid API token" in out and "Traceback" not in out
    assert not (tmp_path / "config.json").exists()


def test_factories_list_and_show(env: dict[str, str]) -> None:
    code, out = aif(["factories", "list"], env)
    assert code == 0
    for name in ("BSC AIF", "IT4LIA", "LUMI AIF", "Meluxina-AI", "MIMER", "HammerHAI", "Pharos"):
        assert name in out
    code, out = aif(["factories", "show", "LUMI AIF"], env)
    assert code == 0
    assert "Kajaani" in out and "CZ, DK, EE, NO, PL" in out and "MI300X" in out


def test_unknown_factory_is_a_one_line_error(env: dict[str, str]) -> None:
    code, out = aif(["factories", "show", "Atlantis"], env)
    assert code == 1
    assert "factory 'Atlantis' not found" in out and "Traceback" not in out


def test_federation_summary_shows_computed_totals(env: dict[str, str]) -> None:
    code, out = aif(["federation", "summary"], env)
    assert code == 0
    assert "17 = 15 EU Member States + 2 EuroHPC participating states" in out
    assert "€1.50 bn" in out and "new: 5" in out


def test_admin_creates_user_and_token_then_revokes_it(env: dict[str, str]) -> None:
    code, out = aif(
        [
            "admin",
            "create-user",
            "opal",
            "--email",
            "opal@csc.fi",
            "--role",
            "factory_operator@LUMI AIF",
        ],
        env,
    )
    assert code == 0, out
    assert "factory_operator@LUMI AIF" in out
    code, out = aif(["admin", "create-token", "opal", "--name", "ops"], env)
    assert code == 0, out
    secret = next(w for w in out.split() if w.startswith("aif_"))
    token_id = out.split()[1]
    opal = {**env, "AIF_TOKEN": secret}
    assert aif(["factories", "list"], opal)[0] == 0
    code, out = aif(["admin", "revoke-token", token_id], env)
    assert code == 0 and "revoked" in out
    code, out = aif(["factories", "list"], opal)
    assert code == 1 and "revoked" in out


def test_non_admin_is_told_what_role_is_needed(
    server: tuple[str, Person], env: dict[str, str]
) -> None:
    code, out = aif(["admin", "create-user", "x1", "--email", "x@y.eu", "--role", "pi"], env)
    assert code == 0
    code, out = aif(["admin", "create-token", "x1"], env)
    secret = next(w for w in out.split() if w.startswith("aif_"))
    code, out = aif(
        ["admin", "create-user", "x2", "--email", "x2@y.eu"], {**env, "AIF_TOKEN": secret}
    )
    assert code == 1
    assert "manage_identity needs one of: federation_admin" in out


def test_unreachable_api_is_explained(tmp_path: Path) -> None:
    env = {
        "AIF_URL": f"http://127.0.0.1:{free_port()}",
        "AIF_TOKEN": "x",
        "AIF_CONFIG_DIR": str(tmp_path),
    }
    code, out = aif(["federation", "summary"], env)
    assert code == 1
    assert "cannot reach the aifactory API" in out and "aif serve" in out
