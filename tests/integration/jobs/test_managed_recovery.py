"""Managed recovery: a timed-out or failed attempt with a retry policy is placed again and
resumes from its checkpoint directory; every attempt stays visible."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.enums import Role
from aifactory.services.setup import prepare
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person, make_person

API = "/api/v1"
COUNTER = """
import os, pathlib, sys, time
ckpt = pathlib.Path(os.environ["AIF_CHECKPOINT_DIR"]); ckpt.mkdir(parents=True, exist_ok=True)
state = ckpt / "step"
step = int(state.read_text()) if state.exists() else 0
print(f"attempt {os.environ['AIF_ATTEMPT']} resumes at step {step}", flush=True)
while step < 12:
    time.sleep(0.25); step += 1
    tmp = ckpt / "step.tmp"; tmp.write_text(str(step)); os.replace(tmp, state)
print("done at step", step, flush=True)
"""


def test_timed_out_attempt_is_retried_and_resumes_from_its_checkpoint(
    db: Database, settings: Settings, operator: Person, tmp_path: Path
) -> None:
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        body = spec(
            code,
            [PY, "-c", COUNTER],
            resources={"time_limit": 2},
            checkpoint_dir=str(tmp_path / "ckpt"),
            retry={"max_attempts": 3, "on": ["timed_out"]},
        )
        job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
        runner = AgentRunner(settings, db)
        get = lambda: ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))  # noqa: E731
        run_until(runner, lambda: get()["state"] == "completed", timeout=60)
        done = get()
        logs = [
            ok(api.get(f"{API}/jobs/{job['id']}/logs?attempt={n}", headers=anna.headers))["text"]
            for n in range(1, done["attempt"] + 1)
        ]
    states = [a["state"] for a in done["attempts"]]
    assert states[-1] == "completed" and set(states[:-1]) == {"timed_out"}
    assert len(states) >= 2
    assert "resumes at step 0" in logs[0]
    resumed_at = int(logs[1].split("resumes at step ")[1].split()[0])
    assert resumed_at > 0  # the second attempt continued, it did not start over
    assert "done at step 12" in logs[-1]
    assert sum(float(a["charged_gpu_hours"]) for a in done["attempts"]) == pytest.approx(
        float(done["charged_gpu_hours"])
    )


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None and os.environ.get("CI") != "true",
    reason="torch not installed (pip install 'aifactory[train]')",
)
def test_gpt_training_killed_by_its_time_limit_resumes_with_the_loss_curve(
    settings: Settings, tmp_path: Path
) -> None:
    db = prepare(settings)  # SQLite only: the slow training story needs one backend
    operator = make_person(db, "olli", [(Role.FACTORY_OPERATOR, "LUMI AIF")])
    train = Path(__file__).resolve().parents[3] / "examples" / "train_gpt" / "train.py"
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        ckpt = tmp_path / "gpt"
        body = spec(
            code,
            [
                PY,
                str(train),
                "--steps",
                "120",
                "--log-every",
                "10",
                "--checkpoint-dir",
                str(ckpt),
                "--checkpoint-every",
                "10",
                "--threads",
                "1",
                "--eval-every",
                "0",
                "--sample-chars",
                "0",
            ],
            resources={"time_limit": 12},
            checkpoint_dir=str(ckpt),
            retry={"max_attempts": 4, "on": ["timed_out"]},
        )
        job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
        runner = AgentRunner(settings, db)
        get = lambda: ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))  # noqa: E731
        run_until(runner, lambda: get()["state"] == "completed", timeout=180)
        done = get()
        texts = [
            ok(api.get(f"{API}/jobs/{job['id']}/logs?attempt={n}", headers=anna.headers))["text"]
            for n in range(1, done["attempt"] + 1)
        ]
    assert done["attempts"][0]["state"] == "timed_out" and len(done["attempts"]) >= 2
    assert "resumed=true" in texts[1]
    losses = [
        float(line.split("loss=")[1].split()[0])
        for t in texts
        for line in t.splitlines()
        if line.startswith("step=")
    ]
    steps = [
        int(line.split("step=")[1].split()[0])
        for t in texts
        for line in t.splitlines()
        if line.startswith("step=")
    ]
    assert steps == sorted(steps) and steps[-1] == 120  # the curve continues, never restarts
    assert losses[-1] < losses[0] - 1.0
