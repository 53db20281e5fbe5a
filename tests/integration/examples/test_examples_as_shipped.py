"""The shipped job specs, submitted as they are through `aif submit` to a running `aif serve`.

Only ``--project`` is given on the command line (the files name no project). The
server runs as a subprocess in a scratch directory holding a link to the checkout's
``examples/``, so relative paths in the specs (``workdir: .``, checkpoints) resolve as they
would for a user who started `aif serve` in the checkout, without writing into it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aifactory.testing.serving import ENDED, Federation, served_federation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    with served_federation() as fed:
        yield fed


def test_hello_as_shipped_completes(federation: Federation) -> None:
    job_id, out = federation.submit(Path("examples/jobs/hello.yaml"), "--follow")
    assert "hello from GPUs" in out
    assert "completed (exit code 0)" in out
    job = federation.api("GET", f"/jobs/{job_id}")
    assert job["state"] == "completed" and job["project"] == federation.project
    assert job["factory"] == "LUMI AIF"


def test_resident_job_as_shipped_is_accepted_and_kept_in_finland_or_sweden(
    federation: Federation,
) -> None:
    job_id, out = federation.submit(Path("examples/jobs/resident.yaml"))
    assert re.search(rf"^job {job_id} (placed|pending)", out, re.MULTILINE), out
    job = federation.api("GET", f"/jobs/{job_id}")
    assert job["factory"] in (None, "LUMI AIF", "MIMER")  # FI or SE only
    assert job["gpus"] == 8
    federation.api("POST", f"/jobs/{job_id}/cancel")  # it names a train.py of the user's own
    federation.wait_for(job_id, "end", lambda j: j["state"] in ENDED)


def test_train_gpt_as_shipped_starts_training(federation: Federation) -> None:
    if importlib.util.find_spec("torch") is None:
        reason = "torch is not installed (pip install -e '.[train]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; required under CI", pytrace=False)
        pytest.skip(reason)
    job_id, out = federation.submit(Path("examples/train_gpt/job.yaml"))
    assert re.search(rf"^job {job_id} (placed|pending)", out, re.MULTILINE), out

    def trains(job: dict[str, Any]) -> bool:
        text = federation.api("GET", f"/jobs/{job_id}/logs")["text"]
        return job["state"] == "running" and re.search(r"^step=\d+ loss=", text, re.M) is not None

    # 300 steps take minutes on a laptop CPU: seeing the loss reported is enough here
    # (tests/integration/examples/test_train_gpt.py checks that it falls and resumes).
    federation.wait_for(job_id, "training step", trains)
    log = federation.aif("logs", str(job_id))
    assert "start step=0 world_size=1" in log
    federation.aif("jobs", "cancel", str(job_id))
    federation.wait_for(job_id, "end", lambda j: j["state"] in ENDED)
    job = federation.api("GET", f"/jobs/{job_id}")
    assert job["state"] == "cancelled", job
    assert Decimal(job["charged_gpu_hours"]) > 0  # it ran for seconds on one GPU
