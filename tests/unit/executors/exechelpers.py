"""Helpers for executor tests (a module of its own: test files cannot import conftest)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from aifactory.executors import ExecJob, ExecStatus

# A job that prints its GPUs, appends a line to a run log (so a test can count how many times
# it ran) and holds until a release file appears: timing by files, not by sleeps.
HOLD = """\
import os, sys, time, pathlib
print("gpus=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
with open(sys.argv[1], "a") as runs:
    runs.write(str(os.getpid()) + "\\n")
release = pathlib.Path(sys.argv[2])
deadline = time.monotonic() + 20
while not release.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
"""

Wait = Callable[..., ExecStatus]


class Holder:
    """Builds HOLD jobs and releases them."""

    def __init__(self, tmp_path: Path) -> None:
        self.script = tmp_path / "hold.py"
        self.script.write_text(HOLD)
        self.runs = tmp_path / "runs.log"
        self.tmp = tmp_path

    def job(self, job_id: str, gpus: int = 0, attempt: int = 1) -> ExecJob:
        release = self.tmp / f"release-{job_id}"
        argv = [sys.executable, str(self.script), str(self.runs), str(release)]
        return ExecJob(job_id=job_id, attempt=attempt, argv=argv, gpus_per_node=gpus)

    def release(self, job_id: str) -> None:
        (self.tmp / f"release-{job_id}").touch()

    def run_count(self) -> int:
        return len(self.runs.read_text().splitlines()) if self.runs.exists() else 0


def gone(pid: int) -> bool:
    """Dead or a zombie (an orphan that PID 1 of a container may never reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"
