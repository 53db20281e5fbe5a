"""`aif submit --follow` and `aif logs --follow`: exit status from the end state, every attempt."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from aifactory.testing.people import make_person

runner = CliRunner()

# Prints its attempt number, fails with exit code 3 on the attempts listed in argv[1].
FLAKY = (
    "import os, sys; n = os.environ['AIF_ATTEMPT']; print('attempt', n, 'says hi', flush=True); "
    "sys.exit(3 if n in sys.argv[1].split(',') else 0)"
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("cli-follow"), agent_interval_s=0.1)
    db = prepare(settings)
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
    db.dispose()


def aif(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def job_file(env: dict[str, str], tmp_path: Path, fail_on: str, **extra: Any) -> Path:
    spec = {
        "name": "flaky",
        "project": env["PROJECT"],
        "command": [sys.executable, "-c", FLAKY, fail_on],
        "resources": {"gpus_per_node": 1, "time_limit": "5m"},
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def job_id(output: str) -> str:
    return output.split("job ", 1)[1].split()[0]


def test_follow_exits_zero_when_the_job_completes(env: dict[str, str], tmp_path: Path) -> None:
    out = aif(env, "submit", str(job_file(env, tmp_path, fail_on="")), "--follow")
    assert "attempt 1 says hi" in out
    assert "completed (exit code 0)" in out
    assert "--- attempt" not in out
    assert "attempt 1 says hi" in aif(env, "logs", job_id(out), "--follow")


def test_follow_exits_one_with_state_and_reason_when_the_job_fails(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = aif(env, "submit", str(job_file(env, tmp_path, fail_on="1")), "--follow", code=1)
    assert "attempt 1 says hi" in out
    assert "failed (exit code 3)" in out
    assert f"job {job_id(out)} ended failed: exit code 3" in out
    again = aif(env, "logs", job_id(out), "--follow", code=1)
    assert "attempt 1 says hi" in again and "ended failed" in again
    assert "Traceback" not in out + again


def test_follow_streams_the_second_attempt_of_a_retried_job(
    env: dict[str, str], tmp_path: Path
) -> None:
    retry = {"retry": {"max_attempts": 2, "on": ["failed"]}}
    path = job_file(env, tmp_path, fail_on="1", **retry)
    path.write_text(path.read_text().replace("'on':", "on:"))  # bare, as people write it
    out = aif(env, "submit", str(path), "--follow")
    first = out.index("attempt 1 says hi")
    banner = out.index("--- attempt 2 ---")
    second = out.index("attempt 2 says hi")
    assert first < banner < second
    assert "completed (exit code 0)" in out
    shown = aif(env, "jobs", "show", job_id(out))
    assert "retry: attempt 2" in shown
    replay = aif(env, "logs", job_id(out), "--follow")  # after the end: every attempt again
    assert replay.index("attempt 1 says hi") < replay.index("--- attempt 2 ---")
    assert "attempt 2 says hi" in replay


def test_follow_exits_one_when_the_last_attempt_fails_too(
    env: dict[str, str], tmp_path: Path
) -> None:
    retry = {"retry": {"max_attempts": 2, "on": ["failed"]}}
    path = job_file(env, tmp_path, fail_on="1,2", **retry)
    out = aif(env, "submit", str(path), "--follow", code=1)
    assert "attempt 1 says hi" in out and "attempt 2 says hi" in out
    assert out.index("--- attempt 2 ---") < out.index("attempt 2 says hi")
    assert f"job {job_id(out)} ended failed: exit code 3" in out
