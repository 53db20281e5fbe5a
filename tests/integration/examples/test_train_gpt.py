"""The example workload really trains: loss falls, resume is exact, DDP and the executor work.

Runs use a tiny model so each takes a few seconds on two cores (most of it importing torch).
Waits are on progress (a new output line, a state change), so a loaded machine only slows them.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import pytest

from aifactory.executors import ExecJob, ExecState, LocalExecutor
from aifactory.testing.jobs import run_watched, wait_for

ROOT = Path(__file__).resolve().parents[3]
TRAIN = ROOT / "examples" / "train_gpt" / "train.py"
TINY = [
    "--n-layer", "2", "--n-embd", "64", "--batch-size", "16", "--block-size", "32",
    "--lr", "5e-3", "--warmup", "5", "--log-every", "10", "--eval-every", "0",
    "--eval-batches", "2", "--sample-chars", "20",
]  # fmt: skip
STALL_S = 120.0  # seconds a run may go without a new line or state (torch imports slowly)
SAFETY_LIMIT_S = 900  # a run a failed test leaves behind ends by then; no run needs as long
STEP_LINE = re.compile(r"^step=(\d+) loss=([0-9.]+) ", re.MULTILINE)

# The ceiling for a whole test; each wait in it fails sooner, once its run stops progressing.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


@pytest.fixture(autouse=True)
def _torch_available() -> None:
    if importlib.util.find_spec("torch") is None:
        reason = "torch is not installed (pip install -e '.[train]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; required under CI", pytrace=False)
        pytest.skip(reason)


def train(*args: str | Path, expect: int = 0) -> str:
    done = run_watched([sys.executable, TRAIN, *TINY, *args], stall=STALL_S)
    assert done.returncode == expect, done.stderr[-3000:]
    return done.stdout


def losses(output: str) -> dict[int, float]:
    return {int(step): float(loss) for step, loss in STEP_LINE.findall(output)}


def test_loss_falls_during_a_short_run() -> None:
    out = train("--steps", "60")
    curve = losses(out)
    assert curve[1] > 3.8  # about ln(64 characters): the model starts knowing nothing
    assert curve[60] < curve[1] - 1.0
    assert re.search(r"^done step=60 loss=[0-9.]+ val_loss=[0-9.]+ ", out, re.MULTILINE)
    assert re.search(r"^sample=\".*\"$", out, re.MULTILINE)


def test_killed_run_resumes_from_its_checkpoint_with_the_uninterrupted_loss(
    tmp_path: Path,
) -> None:
    common = ["--steps", "40", "--checkpoint-every", "10"]
    whole = train(*common, "--checkpoint-dir", tmp_path / "whole")

    first = train(*common, "--checkpoint-dir", tmp_path / "cut", "--stop-after", "25", expect=1)
    assert "checkpoint step=20 " in first and "checkpoint step=25" not in first
    second = train(*common, "--checkpoint-dir", tmp_path / "cut")

    assert "start step=20 " in second and "resumed=true" in second
    assert losses(second) == {s: v for s, v in losses(whole).items() if s > 20}
    assert final(second) == final(whole)  # same loss, same validation loss, same sample


def final(output: str) -> list[str]:
    """The end-of-run lines without the wall-clock time."""
    lines = [line for line in output.splitlines() if line.startswith(("done ", "sample="))]
    return [line.split(" elapsed_s=")[0] for line in lines]


def _output(ex: LocalExecutor, backend_id: str) -> str:
    out = ex.log_paths(backend_id)[0]
    return out.read_text() if out.exists() else ""


def _state(ex: LocalExecutor, backend_id: str) -> ExecState:
    return ex.poll([backend_id])[backend_id].state


def wait(ex: LocalExecutor, backend_id: str) -> ExecState:
    """The attempt's end state; fails only if neither its state nor its output moves for long."""
    wait_for(
        lambda: _state(ex, backend_id).terminal,
        lambda: (_state(ex, backend_id), len(_output(ex, backend_id))),
        stall=STALL_S,
        step=0.1,
        what=f"end of {backend_id}",
    )
    return _state(ex, backend_id)


def test_two_process_ddp_run_under_torchrun_via_the_local_executor(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", gpus=2)
    spec = ExecJob(
        job_id="ddp",
        argv=["python", str(TRAIN), *TINY, "--steps", "20", "--checkpoint-dir", "ckpt"],
        gpus_per_node=2,
        launcher="torchrun",
        workdir=str(tmp_path),
        time_limit_s=SAFETY_LIMIT_S,
    )
    backend_id = ex.submit(spec)
    state = wait(ex, backend_id)
    stdout, stderr = (p.read_text() for p in ex.log_paths(backend_id))
    assert state is ExecState.COMPLETED, stderr[-3000:]
    assert "start step=0 world_size=2 device=cpu" in stdout
    assert "done step=20 " in stdout
    assert (tmp_path / "ckpt" / "ckpt.pt").exists()


def test_cancelled_attempt_checkpoints_and_the_next_attempt_resumes(tmp_path: Path) -> None:
    ex = LocalExecutor(tmp_path / "state", kill_grace_s=10)
    args = [*TINY, "--steps", "100000", "--log-every", "5", "--checkpoint-every", "1000"]
    argv = ["python", str(TRAIN), *args, "--checkpoint-dir", str(tmp_path / "ckpt")]
    first = ex.submit(ExecJob(job_id="pre", attempt=1, argv=argv, time_limit_s=SAFETY_LIMIT_S))
    out = ex.log_paths(first)[0]
    wait_for(
        lambda: "step=10 " in _output(ex, first),
        lambda: (_state(ex, first), len(_output(ex, first))),
        stall=STALL_S,
        step=0.1,
        what="training reaching step 10",
    )
    ex.cancel(first)  # SIGTERM: the script saves a checkpoint before it exits
    assert wait(ex, first) is ExecState.CANCELLED
    saved = re.search(r"^preempted step=(\d+)", out.read_text(), re.MULTILINE)
    assert saved, out.read_text()

    retry = argv[:]
    retry[retry.index("100000")] = str(int(saved[1]) + 5)
    second = ex.submit(ExecJob(job_id="pre", attempt=2, argv=retry, time_limit_s=SAFETY_LIMIT_S))
    assert wait(ex, second) is ExecState.COMPLETED
    assert f"start step={saved[1]} " in ex.log_paths(second)[0].read_text()
