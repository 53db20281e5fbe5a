"""`aif demo` (what `make demo` runs) works on a fresh data dir and again on the same one.

On the embedded default (SQLite) `tests/integration/cli/test_readme_block.py` runs it before and
after the README's commands in one data dir; here it runs twice on PostgreSQL
(``AIF_DATABASE_URL``). The demo is watched line by line: it fails when it stops printing, not
after a fixed time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aifactory.db.engine import Database
from aifactory.testing import databases
from aifactory.testing.demo import run_demo


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a ceiling only: each run fails after 120 s without a new line
@pytest.mark.parametrize("backend", ["postgresql"])
def test_demo_runs_twice_and_shows_the_federation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db: Database = request.getfixturevalue("postgres_db")
    databases.empty(db)
    env = {
        **os.environ,
        "AIF_DATA_DIR": str(tmp_path / "data"),
        "AIF_CONFIG_DIR": str(tmp_path),
        "AIF_DATABASE_URL": db.engine.url.render_as_string(hide_password=False),
    }
    for _ in range(2):
        out = run_demo(env)
    assert not (tmp_path / "data" / "aifactory.db").exists()  # it used PostgreSQL
    assert not (tmp_path / "data" / "demo" / "aifactory.db").exists()
    assert "database: postgresql" in out
