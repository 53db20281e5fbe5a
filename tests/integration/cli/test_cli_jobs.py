"""`aif submit`, `aif jobs ...` and `aif logs --follow` against a real server with site agents,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from aifactory.api.app import create_app
from aifactory.cli.main import app
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.jobs import BACKENDS, backend_database
from aifactory.testing.people import make_person

runner = CliRunner()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One server per backend serves the whole module (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def env(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cli-jobs"), agent_interval_s=0.1)
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        with TestClient(create_app(settings, db)) as api:
            code, _ = award(api, anna, ops)
        with BackgroundServer(settings, db, agents=True) as srv:
            yield {
                "AIF_URL": srv.url,
                "AIF_TOKEN": anna.token,
                "PROJECT": code,
                "AIF_CONFIG_DIR": str(tmp_path_factory.mktemp("cfg")),
            }


def aif(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def test_submit_yaml_and_follow_logs_to_completion(env: dict[str, str], tmp_path: Path) -> None:
    spec = {
        "name": "hello",
        "project": env["PROJECT"],
        "command": [sys.executable, "-c", "for i in range(3): print('step', i, flush=True)"],
        "resources": {"gpus_per_node": 1, "time_limit": "5m"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = aif(env, "submit", str(path), "--follow")
    assert "placed on LUMI AIF" in out
    assert "chosen" in out and "LUMI AIF/LUMI-AI/gpu" in out
    assert "step 0\nstep 1\nstep 2" in out
    assert "completed (exit code 0)" in out
    job_id = out.split("job ")[1].split()[0]
    shown = aif(env, "jobs", "show", job_id)
    assert "completed" in shown and "Attempts" in shown and "History" in shown
    assert "step 2" in aif(env, "logs", job_id)
    assert "hello" in aif(env, "jobs", "list")


def test_sbatch_script_import_notes_ignored_directives_and_passes_args(
    env: dict[str, str], tmp_path: Path
) -> None:
    script = tmp_path / "train.sbatch"
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=imported\n#SBATCH --gpus-per-node=1\n"
        '#SBATCH --time=00:05:00\n#SBATCH --mail-user=me@x.eu\necho from-sbatch "$1"\n'
    )
    out = aif(env, "submit", str(script), "--project", env["PROJECT"], "--follow", "--", "a b")
    assert "ignored" in out and "--mail-user=me@x.eu" in out
    assert "from-sbatch a b" in out and "completed" in out


def test_a_refused_sbatch_script_is_not_submitted(env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "chain.sbatch"
    script.write_text("#!/bin/bash\n#SBATCH --dependency=afterok:1 --time=5\necho no\n")
    out = aif(env, "submit", str(script), "--project", env["PROJECT"], code=2)
    assert "sbatch.--dependency" in out and "Traceback" not in out
    assert "chain.sbatch" not in aif(env, "jobs", "list")


def test_bad_spec_file_is_a_clear_error(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "project": env["PROJECT"], "command": 7}))
    out = aif(env, "submit", str(path), code=1)
    assert "command: Value error, must be a string or a list of strings" in out
    assert "Traceback" not in out
