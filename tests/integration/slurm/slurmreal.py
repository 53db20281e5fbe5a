"""Helpers for the real-Slurm tests: executor settings per cluster/transport, polling."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from aifactory.executors.base import ExecStatus
from aifactory.executors.slurm import SlurmExecutor

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ["bash", str(ROOT / "scripts" / "slurm" / "harness.sh")]


def settings(h: dict[str, str], kind: str) -> dict[str, Any]:
    """Executor settings for one of the harness's clusters and transports."""
    # These jobs carry no run_as: they run as the service's own user (see test_site_identity_real).
    common = {"job_root": h["JOB_ROOT"], "command_timeout_s": 30.0, "require_site_account": False}
    f2 = {**common, "cluster": "factory2", "gpu_type": "h100"}
    table: dict[str, dict[str, Any]] = {
        "f1-local": {
            **common,
            "cluster": "factory1",
            "slurm_conf": h["FACTORY1_CONF"],
            "accounting": False,
        },
        "f2-local": {**f2, "slurm_conf": h["FACTORY2_CONF"], "gpu_request": "gres"},
        "f2-ssh": {
            **f2,
            "transport": "ssh",
            "ssh": {
                "host": h["SSHD_HOST"],
                "port": int(h["SSHD_PORT"]),
                "user": h["SSHD_USER"],
                "key_file": h["SSHD_KEY"],
                "known_hosts_file": h["SSHD_KNOWN_HOSTS"],
                "remote_env": {"SLURM_CONF": h["FACTORY2_CONF"]},
            },
        },
        "f2-rest": {
            **f2,
            "transport": "rest",
            "rest": {"url": h["FACTORY2_REST_URL"], "user": h["JOB_USER"], "token": h["TOKEN"]},
        },
    }
    return table[kind]


KINDS = ["f1-local", "f2-local", "f2-ssh", "f2-rest"]


def slurm(conf: str, *argv: str) -> str:
    """A Slurm command's output on the cluster of ``conf`` (as root, like the harness)."""
    env = {"PATH": "/usr/bin:/bin:/usr/sbin", "SLURM_CONF": conf}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False).stdout


def resume_killed(conf: str) -> list[str]:
    """Resume the nodes Slurm drained "Kill task failed" (its UnkillableStepTimeout, e.g. for a
    step that finished while slurmctld was stopped), as an operator does; the nodes resumed."""
    resumed = []
    for line in slurm(conf, "sinfo", "-h", "-N", "-o", "%N|%T|%E").splitlines():
        node, state, reason = line.split("|", 2)
        if "drain" in state and reason == "Kill task failed":
            slurm(conf, "scontrol", "update", f"nodename={node}", "state=resume")
            resumed.append(node)
    return resumed


def new_id() -> str:
    return "it-" + uuid.uuid4().hex[:10]


def wait(
    ex: SlurmExecutor,
    backend_id: str,
    timeout: float = 30,
    *,
    terminal: bool = True,
    state: str = "",
) -> ExecStatus:
    """Poll until the attempt is terminal (or reaches ``state``)."""
    deadline = time.time() + timeout
    while True:
        status = ex.poll([backend_id]).get(backend_id)
        if status is not None and (status.state == state if state else status.state.terminal):
            return status
        if time.time() > deadline:
            raise AssertionError(f"job {backend_id} still {status} after {timeout}s")
        time.sleep(0.2)
