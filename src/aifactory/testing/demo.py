"""`aif demo` run as `make demo` runs it, watched line by line, and what it must have shown."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from aifactory.testing.jobs import run_watched

AIF = Path(sys.executable).parent / "aif"


def run_demo(env: dict[str, str]) -> str:
    """Run `aif demo` (stdout piped, as in CI) to its end; its stdout once it told the story.

    It fails when the demo stops printing for two minutes, not after a fixed time.
    """
    env = {**env, "AIF_DEMO_TRAIN_STEPS": "40", "PYTHONUNBUFFERED": "1"}
    done = run_watched([AIF, "demo"], env=env, stall=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_demo_story(done.stdout)
    return done.stdout


def assert_demo_story(out: str) -> None:
    """The whole story, in the plain tab-separated tables `aif` prints when piped."""
    assert "15 EU Member States + 2 EuroHPC participating states" in out
    assert "aif serve" in out
    assert "Eligibility for mode PG: eligible" in out
    assert "technical_assessment\taccepted" in out
    assert "EHPC-AIF-" in out
    assert re.search(r"\tgrant\t2,000\t", out)
    assert "step=1 loss=" in out and "checkpoint step=40" in out
    assert "completed (exit code 0)" in out
    assert re.search(r"^completion: '.+'$", out, re.MULTILINE), out[-3000:]
    assert "'completion_tokens': 60" in out and "endpoint stopped" in out
    assert "\x1b[" not in out and "│" not in out  # piped: no styles, no box drawing
