"""Schemathesis (`st run --checks all`) over every API operation, against a real server.

The server runs on a seeded federation; the run signs in once as an applicant who holds a
project with an allocation and a job, and once as a federation admin. Every check is on: no
server errors, and every status code, content type, header and body as the OpenAPI document
says. Generation is deterministic, so a failure here is the same failure on every machine.

Schema-valid input may still break a rule a JSON schema cannot state (a known factory name,
funding shares that sum to 1, a date after the federation began): those answers are the
documented 409 and 422, so ``positive_data_acceptance`` counts them as accepted answers.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.server import BackgroundServer
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.jobs import run_watched, spec
from aifactory.testing.people import make_person, move_tokens_out_of_reach

CONFIG = """
[cache]
enabled = false

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]

[dictionaries.projects]
values = ["{code}"]

[parameters]
"path.code" = {{ dictionary = "projects", probability = 0.5 }}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # Its deliberately bad tokens would lock the fuzzer's address (429) long before the end.
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("schemathesis") / "data", auth_address_failures=100_000
    )
    empty = Database(settings.effective_database_url)
    empty.upgrade()
    db = prepare(settings, empty)
    people = {
        "applicant": member_of(db, "anna", "Nordic Tokens Oy"),
        "admin": make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)]),
    }
    operator = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    try:
        with BackgroundServer(settings, db) as server, httpx.Client(base_url=server.url) as http:
            code, _ = award(http, people["applicant"], operator)  # type: ignore[arg-type]
            job = http.post(
                "/api/v1/jobs", headers=people["applicant"].headers, json=spec(code, ["true"])
            )
            assert job.status_code == 201, job.text
            # A generated DELETE /tokens/1 must not revoke the token a run signs in with.
            move_tokens_out_of_reach(db, *people.values())
            yield {"url": server.url, "people": people, "code": code}
    finally:
        db.dispose()


def _operations() -> int:
    app = create_app(Settings(data_dir=Path("unused")), Database("sqlite://"))
    return sum(len(item) for item in app.openapi()["paths"].values())


@pytest.mark.slow
@pytest.mark.parametrize("who", ["applicant", "admin"])
def test_every_operation_passes_every_check(
    served: dict[str, Any], who: str, tmp_path: Path
) -> None:
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.format(code=served["code"]))
    report = tmp_path / "report.json"
    token = served["people"][who].token
    argv = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{served['url']}/openapi.json",
        "--checks", "all",
        "--header", f"Authorization: Bearer {token}",
        "--max-examples", "20",
        "--generation-deterministic",
        "--workers", "2",
        "--request-timeout", "120",
        "--report", "json", "--report-dir", str(tmp_path), "--report-json-path", str(report),
    ]  # fmt: skip
    done = run_watched(argv, stall=300)
    output = done.stdout[-20000:] + done.stderr[-5000:]
    assert report.exists(), output
    result = json.loads(report.read_text())
    totals = {
        "operations": result["operations"]["tested"],
        "failures": result["failures"],
        "errors": result["errors"],
    }
    cases = result["test_cases"]
    print(f"{who}: {totals['operations']} operations, {cases['generated']} test cases")
    assert totals == {"operations": _operations(), "failures": [], "errors": []}, output
    assert done.returncode == 0, output
