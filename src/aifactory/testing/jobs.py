"""Helpers for job tests: drive the agents until a condition holds."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from aifactory.agents.runner import AgentRunner

PY = sys.executable


def run_until(
    runner: AgentRunner, done: Callable[[], bool], timeout: float = 30.0, step: float = 0.05
) -> None:
    """Tick the broker and site agents until ``done()`` or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout} s")
        runner.tick()
        time.sleep(step)


def spec(project: str, command: list[str] | str, **extra: Any) -> dict[str, Any]:
    """A small job spec: one GPU, a minute, on the given project."""
    resources = {"nodes": 1, "gpus_per_node": 1, "time_limit": 60, **extra.pop("resources", {})}
    return {
        "name": extra.pop("name", "test-job"),
        "project": project,
        "command": command,
        "resources": resources,
        **extra,
    }
