"""Managed recovery: a timed-out or failed attempt with a retry policy is placed again and
resumes from its checkpoint directory; every attempt stays visible."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aifactory.agents.runner import AgentRunner
from aifactory.api.app import create_app
from aifactory.db.engine import Database
from aifactory.domain.jobs import TERMINAL as TERMINAL_STATES
from aifactory.settings import Settings
from aifactory.testing.access import award, member_of, ok
from aifactory.testing.jobs import PY, run_until, spec
from aifactory.testing.people import Person

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


def _settled(job: dict[str, Any], max_attempts: int) -> bool:
    """The job ended for good: completed, or failed in a way no retry follows."""
    retried = job["state"] == "timed_out" and job["attempt"] < max_attempts
    return job["state"] in TERMINAL_STATES and not retried


def test_timed_out_attempt_is_retried_and_resumes_from_its_checkpoint(
    db: Database, settings: Settings, operator: Person
) -> None:
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        body = spec(
            code,
            [PY, "-c", COUNTER],
            resources={"time_limit": 2},
            checkpoint_dir="ckpt",  # in the job's own directory, which its attempts share
            retry={"max_attempts": 10, "on": ["timed_out"]},  # more on a loaded machine
        )
        job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
        runner = AgentRunner(settings, db)
        get = lambda: ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))  # noqa: E731
        run_until(runner, lambda: _settled(get(), 10))
        done = get()
        logs = [
            ok(api.get(f"{API}/jobs/{job['id']}/logs?attempt={n}", headers=anna.headers))["text"]
            for n in range(1, done["attempt"] + 1)
        ]
    states = [a["state"] for a in done["attempts"]]
    assert done["state"] == "completed", (states, done["reason"], logs)
    assert states[-1] == "completed" and set(states[:-1]) == {"timed_out"}
    assert len(states) >= 2
    assert "resumes at step 0" in logs[0]
    resumed_at = int(logs[1].split("resumes at step ")[1].split()[0])
    assert resumed_at > 0  # the second attempt continued, it did not start over
    assert "done at step 12" in logs[-1]
    assert sum(float(a["charged_gpu_hours"]) for a in done["attempts"]) == pytest.approx(
        float(done["charged_gpu_hours"])
    )


TRAIN = Path(__file__).resolve().parents[3] / "examples" / "train_gpt" / "train.py"
# The first attempt must run out of time, so the run is longer than one attempt trains on an
# idle machine (~10 steps/s after ~4 s of start-up here); the limit leaves a loaded machine,
# whose start-up alone takes several times longer, room to train in every attempt.
TIME_LIMIT_S = 20
STEPS = 200
MAX_ATTEMPTS = 20


def _steps_and_losses(texts: list[str]) -> list[tuple[int, float]]:
    return [
        (int(line.split("step=")[1].split()[0]), float(line.split("loss=")[1].split()[0]))
        for text in texts
        for line in text.splitlines()
        if line.startswith("step=")
    ]


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a ceiling only: the wait below fails as soon as training stalls
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None and os.environ.get("CI") != "true",
    reason="torch not installed (pip install 'aifactory[train]')",
)
# On SQLite only: the recovery path is the database-independent part (the timed-out attempt on
# PostgreSQL is covered above); this real training costs ~40 s a backend.
@pytest.mark.parametrize("backend", ["sqlite"])
def test_gpt_training_killed_by_its_time_limit_resumes_with_the_loss_curve(
    db: Database, settings: Settings, operator: Person
) -> None:
    with TestClient(create_app(settings, db)) as api:
        anna = member_of(db, "anna", "Nordic Tokens Oy")
        code, _ = award(api, anna, operator)
        ckpt = "gpt"  # in the job's own directory, which its attempts share
        args = ["--steps", str(STEPS), "--log-every", "10", "--checkpoint-dir", ckpt]
        args += ["--checkpoint-every", "10", "--threads", "1", "--eval-every", "0"]
        body = spec(
            code,
            [PY, str(TRAIN), *args, "--sample-chars", "0"],
            resources={"time_limit": TIME_LIMIT_S},
            checkpoint_dir=ckpt,
            # Generous: a loaded machine gets fewer steps into each attempt, so needs more of
            # them; every attempt that trains at all moves the run on from its checkpoint.
            retry={"max_attempts": MAX_ATTEMPTS, "on": ["timed_out"]},
        )
        job = ok(api.post(f"{API}/jobs", headers=anna.headers, json=body), 201)
        runner = AgentRunner(settings, db)
        get = lambda: ok(api.get(f"{API}/jobs/{job['id']}", headers=anna.headers))  # noqa: E731
        # Progress is the attempts' states and logs growing; no fixed budget for the whole run.
        run_until(runner, lambda: _settled(get(), MAX_ATTEMPTS), stall=120, step=0.2)
        done = get()
        texts = [
            ok(api.get(f"{API}/jobs/{job['id']}/logs?attempt={n}", headers=anna.headers))["text"]
            for n in range(1, done["attempt"] + 1)
        ]
    assert done["state"] == "completed", (done["state"], done["reason"], texts[-1][-2000:])
    assert done["attempts"][0]["state"] == "timed_out" and len(done["attempts"]) >= 2
    assert "resumed=true" in texts[1]
    curve = _steps_and_losses(texts)
    logged = [step for step, _ in curve]
    assert logged == sorted(logged) and logged[-1] == STEPS  # continues, never restarts
    assert curve[-1][1] < curve[0][1] - 1.0
