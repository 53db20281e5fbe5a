"""Controllers as separate processes: the real `aif controller` and `aif serve` on one database.

Fixtures give each test a scratch data directory and (for PostgreSQL) the module's scratch
database, emptied and seeded again per test, plus a ``Fleet`` that starts the real entry points
as subprocesses and SIGKILLs whatever is left of them when the test ends. Under CI (CI=true) an
unreachable PostgreSQL fails; elsewhere the PostgreSQL tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from multiprocess_support import LUMI, Fleet, World, base_env

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing import databases
from aifactory.testing.access import award, member_of
from aifactory.testing.people import make_person


def _fail_or_skip(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this module, migrated; dropped at the end."""
    reason = databases.postgres_available()
    if reason is not None:
        _fail_or_skip(reason)
    name, url = databases.create_scratch_postgres()
    try:
        db = Database(url)
        db.upgrade()
        db.dispose()
        yield url
    finally:
        databases.drop_scratch_postgres(name)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Subprocesses of this test (SQLite under ``tmp_path/data`` until told otherwise)."""
    fleet = Fleet(tmp_path, base_env(tmp_path / "data", tmp_path / "config"))
    try:
        yield fleet
    finally:
        fleet.close()
        print(fleet.report())  # pytest shows it when the test fails


@pytest.fixture
def world(pg_url: str, fleet: Fleet) -> Iterator[World]:
    """The module's PostgreSQL database, emptied and seeded; anna has a LUMI AIF project."""
    settings = Settings(data_dir=fleet.base / "data", database_url=pg_url)
    db = Database(pg_url)
    databases.empty(db)
    yield from _seeded(settings, db, fleet)


@pytest.fixture
def sqlite_world(fleet: Fleet) -> Iterator[World]:
    """As ``world``, on the SQLite database under the fleet's data directory."""
    settings = Settings(data_dir=fleet.base / "data")
    yield from _seeded(settings, Database(settings.effective_database_url), fleet)


def _seeded(settings: Settings, db: Database, fleet: Fleet) -> Iterator[World]:
    prepare(settings, db)
    operator = make_person(db, "olli", [(Role.FACTORY_OPERATOR, LUMI)])
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    with TestClient(create_app(settings, db)) as api:
        code, _ = award(api, anna, operator, hours=2000)
    # Jobs append here as the local executor's job user (docs/jobs.md): not under tmp_path.
    shared = Path(tempfile.mkdtemp(prefix="aif-runs-"))
    shared.chmod(0o777)
    try:
        yield World(settings, db, fleet, shared / "runs.txt", anna, code)
    finally:
        db.dispose()
        shutil.rmtree(shared, ignore_errors=True)
