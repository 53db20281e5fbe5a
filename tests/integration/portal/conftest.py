"""Portal fixtures: the web app users reach (``build_app``: the API with the portal)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aifactory.db.engine import Database
from aifactory.server import build_app
from aifactory.settings import Settings


@pytest.fixture
def portal(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(
        build_app(settings, db), raise_server_exceptions=False, follow_redirects=False
    ) as client:
        yield client
