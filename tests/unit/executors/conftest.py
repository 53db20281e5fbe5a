"""Fixtures for executor tests: a local executor on a scratch directory, cleaned up after."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from exechelpers import Holder, Wait

from aifactory.executors import ExecState, ExecStatus, LocalExecutor


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def executor(state_dir: Path) -> Iterator[LocalExecutor]:
    ex = LocalExecutor(state_dir, gpus=4, kill_grace_s=0.5)
    yield ex
    # Leave no process behind, whatever the test did.
    cleanup = LocalExecutor(state_dir, gpus=4, kill_grace_s=0.5)
    for backend_id in cleanup.recover():
        cleanup.cancel(backend_id)
    deadline = time.monotonic() + 5
    while cleanup.recover() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def wait() -> Wait:
    def wait_for(
        ex: LocalExecutor, backend_id: str, *states: ExecState, timeout: float = 10.0
    ) -> ExecStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = ex.poll([backend_id])[backend_id]
            if status.state in states:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{backend_id} is {status}, expected one of {states}")
            time.sleep(0.02)

    return wait_for


@pytest.fixture
def holder(tmp_path: Path) -> Holder:
    return Holder(tmp_path)
