"""``INSERT ... ON CONFLICT DO NOTHING`` for whichever database a session is on."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from aifactory.db.models.base import Base


def insert_or_skip(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``model``'s table that can skip a conflicting row (SQLite or PostgreSQL):
    chain ``.values(...)`` and ``.on_conflict_do_nothing(...)``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)
