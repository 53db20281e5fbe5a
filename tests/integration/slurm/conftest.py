"""Real Slurm for the integration tests: the project's harness (two clusters, sshd, slurmrestd).

The session fixture runs ``bash scripts/slurm/harness.sh up`` (installs and starts what is
missing). Under CI (CI=true) a harness that cannot start fails the tests; elsewhere they are
skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator

import pytest
from slurmreal import HARNESS, KINDS, resume_killed, settings

from aifactory.executors.slurm import SlurmExecutor


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Slurm harness required under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def harness() -> dict[str, str]:
    if os.geteuid() != 0:
        _unavailable("the Slurm harness needs root")
    try:
        proc = subprocess.run(
            [*HARNESS, "up"], capture_output=True, text=True, timeout=600, check=False
        )
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


@pytest.fixture(params=KINDS)
def any_executor(
    request: pytest.FixtureRequest, harness: dict[str, str]
) -> Iterator[SlurmExecutor]:
    yield SlurmExecutor(**settings(harness, str(request.param)))


@pytest.fixture
def f1(harness: dict[str, str]) -> SlurmExecutor:
    return SlurmExecutor(**settings(harness, "f1-local"))


@pytest.fixture
def f2(harness: dict[str, str]) -> SlurmExecutor:
    return SlurmExecutor(**settings(harness, "f2-local"))


@pytest.fixture(autouse=True)
def _nodes_in_service(request: pytest.FixtureRequest) -> None:
    """A real-Slurm test starts with every node in service.

    A node drained "Kill task failed" (Slurm's UnkillableStepTimeout, e.g. after an earlier
    test's controller outage) is resumed with a warning instead of failing unrelated tests
    that need the whole cluster.
    """
    if "harness" not in request.fixturenames:
        return
    h: dict[str, str] = request.getfixturevalue("harness")
    for conf in (h["FACTORY1_CONF"], h["FACTORY2_CONF"]):
        for node in resume_killed(conf):
            warnings.warn(f"{node} ({conf}) was drained 'Kill task failed'; resumed", stacklevel=1)
