"""Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from aifactory.db.engine import Database
from aifactory.db.models import Base


def test_migrated_schema_matches_the_models(empty_db: Database) -> None:
    with empty_db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrading_twice_is_harmless(empty_db: Database) -> None:
    empty_db.upgrade()
    with empty_db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() is not None
