"""Real Slurm for the integration tests: the project's harness (two clusters, sshd, slurmrestd).

The session fixture runs ``bash scripts/slurm/harness.sh up`` (installs and starts what is
missing). Under CI (CI=true) a harness that cannot start fails the tests; elsewhere they are
skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aifactory.executors.base import ExecStatus
from aifactory.executors.slurm import SlurmExecutor

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ["bash", str(ROOT / "scripts" / "slurm" / "harness.sh")]


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Slurm harness required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def harness() -> dict[str, str]:
    if os.geteuid() != 0:
        _unavailable("the Slurm harness needs root")
    try:
        proc = subprocess.run([*HARNESS, "up"], capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"harness.sh up failed: {exc}")
    if proc.returncode != 0:
        _unavailable(f"harness.sh up failed: {proc.stderr.strip()[-800:]}")
    info = subprocess.run([*HARNESS, "info"], capture_output=True, text=True, check=True).stdout
    facts = dict(line.split("=", 1) for line in info.splitlines() if "=" in line)
    facts["TOKEN"] = subprocess.run(
        [*HARNESS, "token", facts["JOB_USER"], "7200"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return facts


def settings(h: dict[str, str], kind: str) -> dict[str, Any]:
    """Executor settings for one of the harness's clusters and transports."""
    common = {"job_root": h["JOB_ROOT"], "command_timeout_s": 30.0}
    f2 = {**common, "cluster": "factory2", "gpu_type": "h100"}
    table: dict[str, dict[str, Any]] = {
        "f1-local": {**common, "cluster": "factory1", "slurm_conf": h["FACTORY1_CONF"], "accounting": False},
        "f2-local": {**f2, "slurm_conf": h["FACTORY2_CONF"], "gpu_request": "gres"},
        "f2-ssh": {**f2, "transport": "ssh", "ssh": {
            "host": h["SSHD_HOST"], "port": int(h["SSHD_PORT"]), "user": h["SSHD_USER"],
            "key_file": h["SSHD_KEY"], "known_hosts_file": h["SSHD_KNOWN_HOSTS"],
            "remote_env": {"SLURM_CONF": h["FACTORY2_CONF"]}}},
        "f2-rest": {**f2, "transport": "rest", "rest": {
            "url": h["FACTORY2_REST_URL"], "user": h["JOB_USER"], "token": h["TOKEN"]}},
    }
    return table[kind]


KINDS = ["f1-local", "f2-local", "f2-ssh", "f2-rest"]


@pytest.fixture(params=KINDS)
def any_executor(request: pytest.FixtureRequest, harness: dict[str, str]) -> Iterator[SlurmExecutor]:
    yield SlurmExecutor(**settings(harness, str(request.param)))


@pytest.fixture
def f1(harness: dict[str, str]) -> SlurmExecutor:
    return SlurmExecutor(**settings(harness, "f1-local"))


@pytest.fixture
def f2(harness: dict[str, str]) -> SlurmExecutor:
    return SlurmExecutor(**settings(harness, "f2-local"))


def new_id() -> str:
    return "it-" + uuid.uuid4().hex[:10]


def wait(ex: SlurmExecutor, backend_id: str, timeout: float = 30, *, terminal: bool = True, state: str = "") -> ExecStatus:
    """Poll until the attempt is terminal (or reaches ``state``)."""
    deadline = time.time() + timeout
    while True:
        status = ex.poll([backend_id]).get(backend_id)
        if status is not None and (status.state == state if state else status.state.terminal):
            return status
        if time.time() > deadline:
            raise AssertionError(f"job {backend_id} still {status} after {timeout}s")
        time.sleep(0.2)
