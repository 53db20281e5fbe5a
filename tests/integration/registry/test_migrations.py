"""Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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


def test_every_foreign_key_leads_an_index(empty_db: Database) -> None:
    """Writing a parent row checks its children by their foreign key: without an index that
    check scans the child table (``UPDATE allocations`` scanned a million jobs on SQLite)."""
    inspector = inspect(empty_db.engine)
    unindexed = []
    for table in inspector.get_table_names():
        keys = [i["column_names"] for i in inspector.get_indexes(table)]
        keys += [u["column_names"] for u in inspector.get_unique_constraints(table)]
        keys.append(inspector.get_pk_constraint(table)["constrained_columns"])
        for fk in inspector.get_foreign_keys(table):
            columns = fk["constrained_columns"]
            if not any(key[: len(columns)] == columns for key in keys):
                unindexed.append(f"{table}{columns} -> {fk['referred_table']}")
    assert unindexed == []
