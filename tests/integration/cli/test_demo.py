"""`aif demo` (what `make demo` runs) works on a fresh data dir and again on the same one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_twice_and_shows_the_federation(tmp_path: Path) -> None:
    aif = Path(sys.executable).parent / "aif"
    env = {
        **os.environ,
        "AIF_DATA_DIR": str(tmp_path / "data"),
        "AIF_CONFIG_DIR": str(tmp_path),
        "AIF_DEMO_TRAIN_STEPS": "40",
    }
    env.pop("AIF_DATABASE_URL", None)
    for _ in range(2):
        done = subprocess.run(
            [str(aif), "demo"], env=env, capture_output=True, text=True, timeout=240, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "15 EU Member States + 2 EuroHPC participating states" in done.stdout
        assert "aif serve" in done.stdout
        assert "Eligibility for mode PG: eligible" in done.stdout
        assert "technical_assessment │ accepted" in done.stdout
        assert "EHPC-AIF-" in done.stdout
        assert re.search(r"│ grant\s+│ 2,000\s+│", done.stdout)
        assert "step=1 loss=" in done.stdout and "checkpoint step=40" in done.stdout
        assert "completed (exit code 0)" in done.stdout
    assert (tmp_path / "data" / "aifactory.db").exists()
