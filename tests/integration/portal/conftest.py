"""Portal fixtures: the web app users reach (``build_app``: the API with the portal)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from portal_support import ARGS, CHROMIUM, UI_STEP_MS, missing_browser

from aifactory.db.engine import Database
from aifactory.server import build_app
from aifactory.settings import Settings


@pytest.fixture
def portal(db: Database, settings: Settings) -> Iterator[TestClient]:
    with TestClient(
        build_app(settings, db), raise_server_exceptions=False, follow_redirects=False
    ) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium through Playwright; skipped without it, except under ``CI=true``."""
    reason = missing_browser()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need chromium under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=UI_STEP_MS)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()
