"""Test databases: a fresh SQLite file, or a scratch PostgreSQL database emptied per test."""

from __future__ import annotations

import os
import uuid

import psycopg
from sqlalchemy import text

from aifactory.db.engine import Database
from aifactory.db.models import Base

PG_HOST = os.environ.get("AIF_TEST_PG_HOST", "127.0.0.1")
PG_ADMIN_DSN = f"host={PG_HOST} port=5432 user=postgres dbname=postgres connect_timeout=3"


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with psycopg.connect(PG_ADMIN_DSN) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
        return f"PostgreSQL on {PG_HOST}:5432 unreachable: {exc}".strip()


def create_scratch_postgres() -> tuple[str, str]:
    """Create an empty database; returns (name, SQLAlchemy URL)."""
    name = f"aif_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"postgresql+psycopg://postgres@{PG_HOST}:5432/{name}"


def drop_scratch_postgres(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty(db: Database) -> None:
    """Delete every row, keeping the schema (much faster than migrating again)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:  # append-only triggers are lifted for the wipe and put back
            triggers = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
            ).all()
            for name, _ in triggers:
                conn.execute(text(f"DROP TRIGGER {name}"))
            for table in tables:
                conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 (names from our metadata)
            for _, sql in triggers:
                conn.execute(text(sql))
