"""Portal fixtures: an app built by ``create_app`` with the portal installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.portal import install
from aifactory.settings import Settings


@pytest.fixture
def portal(db: Database, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, db)
    install(app)
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client
