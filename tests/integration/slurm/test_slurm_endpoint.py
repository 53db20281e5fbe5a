"""Inference endpoints on real Slurm: a replica is a Slurm job, found, checked and replaced.

A real server (API, gateway and controllers in threads) runs LUMI AIF on the harness's cluster
factory1; anna's jobs run there as her own login ``aif-anna``. Her endpoint serves a small GPT
checkpoint trained here: its replica is a Slurm job whose announced address the serving
controller reads from the job's log and health-checks; the official ``openai`` client then
talks to the gateway. A ``scancel`` ends the replica's Slurm job: a new Slurm job takes its place
and requests are answered again (a request sent meanwhile waits for it). Stopping the endpoint
cancels its last Slurm job. (A replica ended by its time limit takes the same path, TIMEOUT
instead of CANCELLED; it was run once, the replacement ready 4-10 s after the limit, and is left
out of the suite because Slurm's smallest limit costs a minute and a half of waiting.)

Waits are on progress (states), with generous ceilings as failure guards only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from slurmreal import ROOT
from unix_users import ensure_unix_user, map_login

from aifactory.api.app import create_app
from aifactory.domain.enums import Role
from aifactory.executors import _jobuser
from aifactory.server import BackgroundServer
from aifactory.services import registry
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.people import make_person

pytestmark = pytest.mark.slow
openai = pytest.importorskip("openai", reason="the gateway is checked with the openai client")
pytest.importorskip("torch", reason="the model server needs torch (the train extra)")

LOGIN = "aif-anna"
NAME = "gpt-slurm"
CEILING_S = 300.0  # failure guard only: a slow machine waits longer, it never fails for it
TIME_LIMIT_S = 600  # well beyond the test: the replicas here end by scancel and stop only
ENDED = {"completed", "failed", "cancelled", "timed_out", "node_failed", "preempted"}
TRAIN = ROOT / "examples" / "train_gpt" / "train.py"
SERVE = ROOT / "examples" / "train_gpt" / "serve.py"


def until(what: str, check: Callable[[], Any], ceiling: float = CEILING_S) -> Any:
    """``check()``'s first truthy answer, polled; fails after ``ceiling`` seconds."""
    deadline = time.monotonic() + ceiling
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} within {ceiling:.0f} s")


@dataclass(frozen=True)
class Fed:
    """The running server's address, anna's client to it and her project."""

    url: str
    http: httpx.Client
    project: str


@pytest.fixture(scope="module")
def fed(harness: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fed]:
    """A running server whose LUMI AIF is factory1, and anna with a project there."""
    # What a site's install does for its users: the platform's Python is theirs to run too
    # (search permission on a closed directory on the way, e.g. /root, for that user alone).
    entry = pwd.getpwnam(ensure_unix_user(LOGIN))
    user = _jobuser.JobUser(LOGIN, entry.pw_uid, entry.pw_gid)
    if not _jobuser.ensure_python(user, sys.executable):
        pytest.skip(f"{LOGIN} cannot run {sys.executable}")
    work = tmp_path_factory.mktemp("slurm-endpoint")
    site = {
        "factory": "LUMI AIF",
        "executor": "slurm",
        "options": {
            "job_root": harness["JOB_ROOT"],
            "command_timeout_s": 30.0,
            "partitions": {"gpu": "debug"},
            "cluster": "factory1",
            "slurm_conf": harness["FACTORY1_CONF"],
            "accounting": False,
        },
    }
    sites = work / "sites.yaml"
    sites.write_text(yaml.safe_dump({"sites": [site]}))
    settings = Settings(data_dir=work / "data", sites_file=sites)
    db = prepare(settings)
    with db.session() as s:  # the registry describes the real test cluster
        registry.update_partition(
            s, "LUMI AIF", "LUMI-AI", "gpu", {"nodes": 4, "gpus_per_node": 4, "gpu_model": "GPU"}
        )
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        map_login(db, "anna", "LUMI AIF", LOGIN)
        operator = make_person(db, "op1", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
        project, _ = award(api, anna, operator, hours=100)
    try:
        with (
            BackgroundServer(settings, db, agents=True) as server,
            httpx.Client(base_url=server.url, headers=anna.headers, timeout=30) as http,
        ):
            yield Fed(server.url, http, project)
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def checkpoint(harness: dict[str, str]) -> Iterator[str]:
    """A small checkpoint of the example GPT, where the job's user can read it."""
    where = Path(tempfile.mkdtemp(prefix="aif-ep-ckpt-", dir=harness["JOB_ROOT"]))
    try:
        subprocess.run(
            [sys.executable, str(TRAIN), "--steps", "4", "--batch-size", "8", "--eval-batches",
             "1", "--checkpoint-dir", str(where), "--checkpoint-every", "4"],
            check=True, capture_output=True, timeout=CEILING_S,
        )  # fmt: skip
        where.chmod(0o755)
        for file in where.iterdir():
            file.chmod(0o644)
        yield str(where)
    finally:
        shutil.rmtree(where, ignore_errors=True)


def shown(fed: Fed) -> dict[str, Any]:
    return ok(fed.http.get(f"/api/v1/endpoints/{NAME}"))  # type: ignore[no-any-return]


def job(fed: Fed, job_id: int) -> dict[str, Any]:
    return ok(fed.http.get(f"/api/v1/jobs/{job_id}"))  # type: ignore[no-any-return]


def ended(fed: Fed, job_id: int) -> dict[str, Any] | None:
    """The job once it has ended, else None."""
    found = job(fed, job_id)
    return found if found["state"] in ENDED else None


def all_ended(fed: Fed) -> dict[str, Any] | None:
    """The endpoint once none of its replicas is live, else None."""
    view = shown(fed)
    return view if all(r["state"] == "ended" for r in view["replicas"]) else None


def ready_replica(fed: Fed, besides: Collection[int] = ()) -> dict[str, Any] | None:
    """A ready replica of the endpoint other than those in ``besides``, once there is one."""
    view = shown(fed)
    assert view["state"] not in ("failing", "exhausted", "stopped"), view
    return next(
        (r for r in view["replicas"] if r["state"] == "ready" and r["id"] not in besides), None
    )


def slurm(harness: dict[str, str], *argv: str) -> str:
    """A Slurm command on factory1, as root (the site's administrator); its stdout."""
    env = {"SLURM_CONF": harness["FACTORY1_CONF"], "PATH": os.environ.get("PATH", "/usr/bin")}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def slurm_job(fed: Fed, replica: dict[str, Any]) -> str:
    """The Slurm job id of a replica's (current) attempt."""
    backend_id = str(job(fed, replica["job_id"])["attempts"][-1]["backend_id"])
    assert backend_id.isdigit(), backend_id
    return backend_id


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


@pytest.fixture(scope="module")
def endpoint(fed: Fed, checkpoint: str, harness: dict[str, str]) -> Iterator[dict[str, Any]]:
    """Anna's endpoint (one replica, a Slurm job); stopped at the end."""
    replica = {
        "resources": {
            "nodes": 1,
            "gpus_per_node": 1,
            "cpus": 2,
            "memory_gb": 2,
            "time_limit": TIME_LIMIT_S,
        },
        "script": (
            "#!/bin/bash\n"
            f'exec {sys.executable} {SERVE} --checkpoint "$CKPT" '
            '--served-model-name "$AIF_ENDPOINT_NAME"\n'
        ),
        "environment": {"CKPT": checkpoint, "PYTHONUNBUFFERED": "1"},
    }
    spec = {"name": NAME, "project": fed.project, "replicas": {"min": 1, "max": 1}}
    spec |= {"startup_timeout": "2m", "replica": replica}
    created = ok(fed.http.post("/api/v1/endpoints", json={"spec": spec}), 201)
    assert created["state"] == "starting", created
    try:
        yield created
    finally:  # a failed test leaves it running: stop it, and leave no Slurm job behind
        if shown(fed)["state"] != "stopped":
            fed.http.delete(f"/api/v1/endpoints/{NAME}")
        try:
            until("the replicas to end", lambda: all_ended(fed), ceiling=60)
        except AssertionError:
            for replica in shown(fed)["replicas"]:
                attempts = job(fed, replica["job_id"])["attempts"]
                if replica["state"] != "ended" and attempts:
                    slurm(harness, "scancel", str(attempts[-1]["backend_id"]))


def test_a_replica_is_a_slurm_job_of_its_owner_and_answers_the_openai_client(
    fed: Fed, endpoint: dict[str, Any], harness: dict[str, str]
) -> None:
    first = until("ready replica", lambda: ready_replica(fed))
    assert shown(fed)["state"] == "ready"
    # The replica is a Slurm job of anna's own login, running on factory1, and its announced
    # address is the one the controller checked.
    backend_id = slurm_job(fed, first)
    assert slurm(harness, "squeue", "-h", "-j", backend_id, "-o", "%u %T") == f"{LOGIN} RUNNING"
    assert first["address"].startswith("http://127.0.0.1:")
    log = ok(fed.http.get(f"/api/v1/jobs/{first['job_id']}/logs"))["text"]
    assert f"AIF_SERVICE_URL={first['address']}" in log

    key = ok(fed.http.post(f"/api/v1/endpoints/{NAME}/keys", json={}), 201)["key"]
    ai = openai.OpenAI(base_url=fed.url + "/v1", api_key=key, max_retries=0, timeout=CEILING_S)
    assert [m.id for m in ai.models.list()] == [NAME]
    done = ai.completions.create(model=NAME, prompt="The cat ", max_tokens=8, seed=3)
    assert len(done.choices[0].text) == 8
    assert done.usage is not None and done.usage.completion_tokens == 8
    chunks = list(
        ai.chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) == 6
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert shown(fed)["usage"]["requests"] == 2


def test_a_replica_cancelled_by_slurm_is_replaced_until_stopped(
    fed: Fed, endpoint: dict[str, Any], harness: dict[str, str]
) -> None:
    key = ok(fed.http.post(f"/api/v1/endpoints/{NAME}/keys", json={}), 201)["key"]
    ai = openai.OpenAI(base_url=fed.url + "/v1", api_key=key, max_retries=0, timeout=CEILING_S)
    second = until("ready replica", lambda: ready_replica(fed))
    second_slurm = slurm_job(fed, second)

    # 1. The replica's Slurm job is cancelled behind the platform's back (an administrator, a
    # node taken away): a new Slurm job takes its place.
    killed = datetime.now(UTC)
    slurm(harness, "scancel", second_slurm)
    cancelled = until("the scancel", lambda: ended(fed, second["job_id"]))
    assert cancelled["state"] == "cancelled", cancelled
    answer = ai.completions.create(model=NAME, prompt="B", max_tokens=3)  # waits for the next
    assert len(answer.choices[0].text) == 3
    third = until("a replacement", lambda: ready_replica(fed, {second["id"]}))
    assert slurm_job(fed, third) != second_slurm
    back = when(third["ready_at"]) - killed
    print(f"scancel: replacement ready {back.total_seconds():.1f} s after it")
    view = shown(fed)
    assert view["state"] == "ready"
    assert [r["state"] for r in view["replicas"]] == ["ready", "ended"]

    # 2. Stopping the endpoint cancels its last Slurm job.
    assert ok(fed.http.delete(f"/api/v1/endpoints/{NAME}"))["state"] == "stopped"
    stopped = until("the replicas to end", lambda: all_ended(fed))
    assert len(stopped["replicas"]) == 2
    last = until("the last job to end", lambda: ended(fed, third["job_id"]))
    assert last["state"] == "cancelled", last
    third_slurm = slurm_job(fed, third)
    assert "CANCELLED" in slurm(harness, "squeue", "-h", "-t", "all", "-j", third_slurm, "-o", "%T")
