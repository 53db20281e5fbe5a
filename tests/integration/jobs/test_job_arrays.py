"""Job arrays on the embedded default: one submission, N task jobs, each visible, charged and
retried on its own, with SLURM_ARRAY_TASK_ID set and the ``%`` limit honoured."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.db.models import Job
from aifactory.domain.jobs import ACTIVE, TERMINAL
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

API = "/api/v1"
# Task 2 fails in its first attempt only (a marker in the checkpoint directory remembers it).
TASK = """
import os, pathlib, time
task = os.environ["SLURM_ARRAY_TASK_ID"]
print("task", task, "of array", os.environ.get("AIF_ARRAY_ID"), flush=True)
time.sleep(0.3)
marker = pathlib.Path(os.environ["AIF_CHECKPOINT_DIR"]) / f"failed-{task}"
if task == "2" and not marker.exists():
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("once")
    raise SystemExit(3)
"""


@pytest.fixture
def env(db: Database, settings: Settings, operator: Person) -> Iterator[dict[str, Any]]:
    settings = settings.model_copy(update={"local_gpus_per_site": 8})
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator, hours=100)
        yield {"api": api, "anna": anna, "code": code, "db": db, "ckpt": "ckpt",
               "runner": AgentRunner(settings, db)}  # fmt: skip


def _tasks(api: TestClient, anna: Person, array_id: int) -> list[dict[str, Any]]:
    page = ok(api.get(f"{API}/jobs?array={array_id}&limit=50", headers=anna.headers))
    return sorted(page["jobs"], key=lambda j: j["array_task"])


def test_array_runs_each_task_once_with_its_index_under_the_limit(env: dict[str, Any]) -> None:
    api, anna, db = env["api"], env["anna"], env["db"]
    body = spec(
        env["code"],
        [PY, "-c", TASK],
        name="sweep",
        array="0-4%2",
        checkpoint_dir=env["ckpt"],
        retry={"max_attempts": 2, "on": ["failed"]},
    )
    first = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
    assert (first["array_id"], first["array_task"]) == (first["id"], 0)
    tasks = _tasks(api, anna, first["id"])
    assert [t["array_task"] for t in tasks] == [0, 1, 2, 3, 4]
    most_active = [0]

    def active() -> int:
        with db.session() as s:
            count = s.scalar(
                select(func.count()).where(Job.array_id == first["id"], Job.state.in_(list(ACTIVE)))
            )
        most_active[0] = max(most_active[0], int(count or 0))
        return int(count or 0)

    def all_done() -> bool:
        active()
        return all(t["state"] in TERMINAL for t in _tasks(api, anna, first["id"])) and not (
            any(t["state"] == "failed" and t["attempt"] < 2 for t in _tasks(api, anna, first["id"]))
        )

    run_until(env["runner"], all_done)
    done = _tasks(api, anna, first["id"])
    assert most_active[0] <= 2, "the %2 limit was exceeded"
    assert [t["state"] for t in done] == ["completed"] * 5, [t["reason"] for t in done]
    # Task 2 failed once and was retried on its own; no other task ran twice.
    assert [t["attempt"] for t in done] == [1, 1, 2, 1, 1]
    for t in done:
        detail = ok(api.get(f"{API}/jobs/{t['id']}", headers=anna.headers))
        assert float(detail["charged_gpu_hours"]) > 0
        log = ok(api.get(f"{API}/jobs/{t['id']}/logs", headers=anna.headers))["text"]
        assert f"task {t['array_task']} of array {first['id']}" in log


@pytest.mark.parametrize(
    ("array", "rule"),
    [("5-1", "upwards"), ("0-2000", "at most 1000"), ("1,x", "not an array"), ("0-3%0", "%0")],
)
def test_bad_array_is_refused_naming_the_field(env: dict[str, Any], array: str, rule: str) -> None:
    api, anna = env["api"], env["anna"]
    body = spec(env["code"], ["true"], array=array)
    response = api.post(f"{API}/jobs", headers=anna.headers, json=body)
    assert response.status_code == 422
    assert "array" in response.text and rule in response.text
    assert ok(api.get(f"{API}/jobs", headers=anna.headers))["jobs"] == []


def test_cancelling_the_array_cancels_every_unfinished_task(env: dict[str, Any]) -> None:
    api, anna = env["api"], env["anna"]
    body = spec(env["code"], ["sleep", "60"], name="long-sweep", array="0-3%1")
    first = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
    run_until(env["runner"], lambda: _tasks(api, anna, first["id"])[0]["state"] == "running")
    alone = api.post(f"{API}/jobs/{first['id']}/cancel?array=true", headers=anna.headers)
    assert alone.status_code == 200
    run_until(
        env["runner"], lambda: all(t["state"] in TERMINAL for t in _tasks(api, anna, first["id"]))
    )
    assert {t["state"] for t in _tasks(api, anna, first["id"])} == {"cancelled"}
    plain = ok(api.post(f"{API}/jobs", headers=anna.headers, json=spec(env["code"], ["true"])), 201)
    refused = api.post(f"{API}/jobs/{plain['id']}/cancel?array=true", headers=anna.headers)
    assert refused.status_code == 422 and "not part of a job array" in refused.text


def test_an_array_submitted_to_a_full_site_keeps_every_task_waiting_in_the_array(
    env: dict[str, Any],
) -> None:
    api, anna = env["api"], env["anna"]
    hog = spec(env["code"], ["sleep", "60"], name="hog", resources={"gpus_per_node": 8})
    ok(api.post(f"{API}/jobs", headers=anna.headers, json=hog), 201)  # takes the site's 8 GPUs
    body = spec(env["code"], ["true"], name="waits", array="0-2")
    first = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
    assert first["state"] == "pending" and first["array_id"] == first["id"]
    assert "waiting for" in first["reason"]
    tasks = _tasks(api, anna, first["id"])
    assert [t["array_task"] for t in tasks] == [0, 1, 2]  # the first task is in its array too
    for task in tasks:
        assert task["state"] == "pending" and "waiting for" in task["reason"], task
        shown = ok(api.get(f"{API}/jobs/{task['id']}", headers=anna.headers))
        assert shown["reason"] == task["reason"] and shown["array_id"] == first["id"]
