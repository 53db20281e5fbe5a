"""The shipped job specs, submitted as they are through `aif submit` to a running `aif serve`.

Only ``--project`` is given on the command line (the files name a placeholder project). The
server runs as a subprocess in a scratch directory holding a link to the checkout's
``examples/``, so relative paths in the specs (``workdir: .``, checkpoints) resolve as they
would for a user who started `aif serve` in the checkout, without writing into it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from aifactory.api.app import create_app
from aifactory.domain.enums import Role
from aifactory.server import free_port
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of
from aifactory.testing.people import make_person
from aifactory.testing.serving import stop_group, wait_healthy

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
AIF = str(Path(sys.executable).parent / "aif")
CEILING_S = 300  # generous: a slow machine only waits longer, it never fails for it
ENDED = {"completed", "failed", "cancelled", "timed_out", "node_failed"}


@dataclass
class Federation:
    """A running `aif serve` and an applicant with an awarded project."""

    work: Path
    env: dict[str, str]
    url: str
    token: str
    project: str

    def aif(self, *args: str, code: int = 0) -> str:
        done = subprocess.run(
            [AIF, *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CEILING_S,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == code, f"aif {' '.join(args)} exited {done.returncode}:\n{output}"
        return output

    def submit(self, spec: Path, *extra: str, code: int = 0) -> tuple[int, str]:
        out = self.aif("submit", str(spec), "--project", self.project, *extra, code=code)
        found = re.search(r"^job (\d+) (\w+)", out, re.MULTILINE)
        assert found, out
        return int(found.group(1)), out

    def api(self, method: str, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        response = httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30)
        return response.json()

    def wait_for(self, job_id: int, what: str, ok: Callable[[dict[str, Any]], bool]) -> None:
        deadline = time.monotonic() + CEILING_S
        while time.monotonic() < deadline:
            job = self.api("GET", f"/jobs/{job_id}")
            if ok(job):
                return
            assert job["state"] not in ENDED, f"job {job_id} ended before {what}: {job}"
            time.sleep(0.5)
        pytest.fail(f"job {job_id}: no {what} within {CEILING_S} s: {job}")


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    # A user's directory that others may enter, like a checkout (pytest's own tmp is 0700):
    # under a root server the job user reads the example's code from where it was submitted.
    base = Path(tempfile.mkdtemp(prefix="aif-examples-", dir="/var/tmp"))
    base.chmod(0o755)
    work = base / "work"
    work.mkdir(mode=0o755)
    (work / "examples").symlink_to(ROOT / "examples")
    settings = Settings(data_dir=base / "data")
    db = prepare(settings)
    anna = member_of(db, "anna", "Nordic Tokens Oy")
    ops = make_person(db, "ops", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    with TestClient(create_app(settings, db)) as api:
        code, _ = award(api, anna, ops)
    db.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIF_")}
    env.update(
        AIF_DATA_DIR=str(base / "data"),
        AIF_CONFIG_DIR=str(base / "config"),
        AIF_PORT=str(port),
        AIF_URL=f"http://127.0.0.1:{port}",
        AIF_TOKEN=anna.token,
        COLUMNS="200",
    )
    log = (base / "serve.log").open("wb")
    server = subprocess.Popen(
        [AIF, "serve"], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    fed = Federation(work, env, env["AIF_URL"], anna.token, code)
    try:
        wait_healthy(server, fed.url, base / "serve.log", CEILING_S)
        yield fed
    finally:
        stop_group(server)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


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
