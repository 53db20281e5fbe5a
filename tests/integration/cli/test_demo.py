"""`aif demo` (what `make demo` runs) works on a fresh data dir and again on the same one.

It runs on the embedded default (a fresh SQLite file) and on PostgreSQL (``AIF_DATABASE_URL``).
The demo is watched line by line: it fails when it stops printing, not after a fixed time.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from aifactory.db.engine import Database
from aifactory.testing import databases
from aifactory.testing.jobs import run_watched


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a ceiling only: each run fails after 120 s without a new line
def test_demo_runs_twice_and_shows_the_federation(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    aif = Path(sys.executable).parent / "aif"
    env = {
        **os.environ,
        "AIF_DATA_DIR": str(tmp_path / "data"),
        "AIF_CONFIG_DIR": str(tmp_path),
        "AIF_DEMO_TRAIN_STEPS": "40",
        "PYTHONUNBUFFERED": "1",  # lines arrive as printed, so silence means no progress
    }
    env.pop("AIF_DATABASE_URL", None)
    if backend == "postgresql":
        db: Database = request.getfixturevalue("postgres_db")
        databases.empty(db)
        env["AIF_DATABASE_URL"] = db.engine.url.render_as_string(hide_password=False)
    for _ in range(2):
        done = run_watched([aif, "demo"], env=env, stall=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "15 EU Member States + 2 EuroHPC participating states" in done.stdout
        assert "aif serve" in done.stdout
        assert "Eligibility for mode PG: eligible" in done.stdout
        assert "technical_assessment │ accepted" in done.stdout
        assert "EHPC-AIF-" in done.stdout
        assert re.search(r"│ grant\s+│ 2,000\s+│", done.stdout)
        assert "step=1 loss=" in done.stdout and "checkpoint step=40" in done.stdout
        assert "completed (exit code 0)" in done.stdout
        assert re.search(r"^completion: '.+'$", done.stdout, re.MULTILINE), done.stdout[-3000:]
        assert "'completion_tokens': 60" in done.stdout and "endpoint stopped" in done.stdout
    if backend == "sqlite":
        assert (tmp_path / "data" / "aifactory.db").exists()
    else:
        assert not (tmp_path / "data" / "aifactory.db").exists()  # it used PostgreSQL
        assert "database: postgresql" in done.stdout
