"""Fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL must be on 127.0.0.1:5432 (trust auth, user postgres). Under CI (CI=true) an
unreachable PostgreSQL fails the run; elsewhere its tests are skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing import databases
from aifactory.testing.people import Person, make_person

BACKENDS = ["sqlite", "postgresql"]


SLURM = "tests/integration/slurm/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The real-Slurm tests go first: under `make test` (pytest -n) they are the longest share
    # of one worker, which should not be the last to start.
    items.sort(key=lambda item: not item.nodeid.startswith(SLURM))  # stable: order kept within
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "postgresql":
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under ``pytest -n N`` a file's tests run on one worker, in order, sharing its module
    fixtures; all real-Slurm tests run on one worker, as they stop and fill the two clusters
    that each of them assumes is its own."""
    from xdist.scheduler import LoadScopeScheduling

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return SLURM if path.startswith(SLURM) else path

    return ByFile(config, log)


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[Database]:
    reason = databases.postgres_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason} (required under CI)", pytrace=False)
        pytest.skip(reason)
    name, url = databases.create_scratch_postgres()
    db = Database(url)
    db.upgrade()
    yield db
    db.dispose()
    databases.drop_scratch_postgres(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def empty_db(
    backend: str, settings: Settings, request: pytest.FixtureRequest
) -> Iterator[Database]:
    """A migrated, empty database on the requested backend."""
    if backend == "sqlite":
        db = Database(settings.effective_database_url)
        db.upgrade()
        yield db
        db.dispose()
        return
    db = request.getfixturevalue("postgres_db")
    databases.empty(db)
    yield db


@pytest.fixture
def db(empty_db: Database, settings: Settings) -> Database:
    """A migrated database holding the default federation."""
    return prepare(settings, empty_db)


@pytest.fixture
def api(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def admin(db: Database) -> Person:
    return make_person(db, "ada", [(Role.FEDERATION_ADMIN, None)])


@pytest.fixture
def operator(db: Database) -> Person:
    return make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])


@pytest.fixture
def applicant(db: Database) -> Person:
    return make_person(db, "anna", [(Role.APPLICANT, None)])
