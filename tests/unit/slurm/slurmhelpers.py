"""Shared helpers for the Slurm unit tests: recorded real outputs from tests/fixtures/slurm/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "slurm"


def fixture(name: str) -> dict[str, Any]:
    """One recorded command (argv, returncode, stdout, stderr) or REST answer."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def output(name: str) -> tuple[str, str, int]:
    """``(stdout, stderr, returncode)`` of a recorded command, in parse() argument order."""
    data = fixture(name)
    return data["stdout"], data["stderr"], data["returncode"]
