"""Schemathesis against /openapi.json: no input gives a 5xx or a response outside the schema.

Every API operation is a test, run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.domain.jobspec import MAX_SPEC_BYTES
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.jobs import BACKENDS, backend_database
from aifactory.testing.people import Person, make_person, move_tokens_out_of_reach

# The operations come from the app's OpenAPI document, which needs no database; the tests call
# an app on a real federation, once per backend.
schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(data_dir=Path("unused")), Database("sqlite://"))
)
# The admin's token is sent with every call, so generating (or leaving out) the Authorization
# header would only make "rejected" cases that are in fact signed in.
schema.config.generation.update(with_security_parameters=False)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """One federation per backend serves every operation (the conftest's is per test)."""
    return str(request.param)


@pytest.fixture(scope="module")
def fuzzed(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[FastAPI, Person]]:
    """The app on a federation that keeps what earlier operations' requests created."""
    settings = Settings(data_dir=tmp_path_factory.mktemp("fuzz"), auth_address_failures=100_000)
    postgres = partial(request.getfixturevalue, "postgres_db")
    with backend_database(backend, settings, postgres) as empty:
        db = prepare(settings, empty)
        admin = make_person(db, "fuzzadmin", [(Role.FEDERATION_ADMIN, None)])
        move_tokens_out_of_reach(db, admin)  # a fuzzed DELETE /tokens/1 must not sign it out
        yield create_app(settings, db), admin


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_fails_on_generated_input(
    case: schemathesis.Case, fuzzed: tuple[FastAPI, Person]
) -> None:
    app, admin = fuzzed
    # Business rules a JSON schema cannot state (shares summing to 1, known country codes)
    # answer schema-valid input with a documented 422, so that one check is left out.
    response = case.call(app=app, headers=admin.headers)
    if response.status_code == 413:
        # Over the 1 MiB limit: refused before parsing, in the one error shape (schemathesis
        # does not count 413 among the statuses that reject invalid data).
        assert len(response.request.body or b"") > MAX_SPEC_BYTES
        assert response.json()["error"]["code"] == "too_large"
        return
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance],
        headers=admin.headers,
        transport_kwargs={"app": app},  # checks that send probes reach the same app
    )
