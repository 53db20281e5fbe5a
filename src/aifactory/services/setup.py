"""Bring a database to a usable state: migrate, then seed the default federation."""

from __future__ import annotations

from aifactory.db.engine import Database, private_dir
from aifactory.services.registry import seed_federation
from aifactory.settings import Settings, load_federation


def prepare(settings: Settings, db: Database | None = None) -> Database:
    """Migrate to the newest schema and add what the federation file has and the DB lacks."""
    private_dir(settings.data_dir)  # 0700: local jobs run as another user and must not look in
    database = db or Database(settings.effective_database_url)
    database.upgrade()
    with database.session() as session:
        seed_federation(session, load_federation(settings.federation_file))
    return database
