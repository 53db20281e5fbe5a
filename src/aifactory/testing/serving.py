"""`aif serve` as a subprocess for tests: wait until it answers, stop its whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

CEILING_S = 300.0  # generous: a slow machine only waits longer, it never fails for it


def wait_healthy(
    server: subprocess.Popen[bytes], url: str, log: Path, ceiling: float = CEILING_S
) -> None:
    """Return once ``url``'s health endpoint answers; fail at once if the server exits."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"aif serve exited:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"aif serve did not answer within {ceiling:g} s:\n{_tail(log)}")


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it was started with a session of its own)."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-5000:] if log.exists() else ""
