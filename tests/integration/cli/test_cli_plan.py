"""`aif plan` against a served federation: before/after from the live registry, a snapshot file
that replays the same offline, the job history for staff only, and bad changes named."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aifactory.testing.serving import AIF, CEILING_S, Federation, served_federation

SMALL = ("--synthetic", "400", "--load", "1.4")  # loaded: jobs wait before the change


@dataclass
class World:
    fed: Federation
    admin: str


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with served_federation() as fed:
        admin = aif(fed, "admin", "bootstrap", "--no-save").stdout.split()[-1]
        hello = ["examples/jobs/hello.yaml", "--project", fed.project]
        job = json.loads(aif(fed, "submit", *hello, "--json").stdout)
        fed.wait_for(job["id"], "completion", lambda j: j["state"] == "completed")
        yield World(fed, admin)


def aif(fed: Federation, *args: str, token: str | None = None, code: int = 0) -> Any:
    """`aif ARGS` as a script runs it: stdout and stderr apart."""
    env = {**fed.env, **({"AIF_TOKEN": token} if token else {})}
    done = subprocess.run(
        [AIF, *args], cwd=fed.work, env=env, capture_output=True, text=True,
        timeout=CEILING_S, check=False,
    )  # fmt: skip
    assert done.returncode == code, f"aif {' '.join(args)}: {done.returncode}\n{done.stderr}"
    return done


def test_doubling_every_factory_doubles_capacity_and_no_wait_grows(world: World) -> None:
    done = aif(world.fed, "plan", *SMALL, "--scale", "*=2", "--json")
    report = json.loads(done.stdout)
    before, after = report["before"], report["after"]
    assert report["changes"] == ["scale * x2"]
    assert after["capacity_gpus"] == 2 * before["capacity_gpus"] == 2 * 2688
    assert {f: after["factories"][f]["gpus"] for f in after["factories"]} == {
        f: 2 * before["factories"][f]["gpus"] for f in before["factories"]
    }
    assert before["wait_s"]["p99"] > 0  # the workload does queue before the change
    for p in ("p50", "p90", "p99", "mean"):
        assert after["wait_s"][p] <= before["wait_s"][p]
        assert after["playground"]["wait_s"][p] <= before["playground"]["wait_s"][p]
    assert before["jobs"] == after["jobs"] == report["workload"]["jobs"] == 400
    hours = sum(before["gpu_hours_by_funding"].values())
    assert hours == pytest.approx(sum(f["gpu_hours"] for f in before["factories"].values()))
    assert "before: 400 jobs replayed" in done.stderr  # the progress line


def test_a_bad_scale_names_the_option_and_the_rule(world: World) -> None:
    unknown = aif(world.fed, "plan", *SMALL, "--scale", "LUMI=2", code=2)
    assert "--scale" in unknown.stderr and "names no factory" in unknown.stderr
    assert unknown.stdout == ""
    malformed = aif(world.fed, "plan", *SMALL, "--scale", "LUMI AIF", code=2)
    assert "--scale" in malformed.stderr and "PARTITION=FACTOR" in malformed.stderr
    taken = aif(world.fed, "plan", *SMALL, "--add-factory", "Pharos:64", code=2)
    assert "--add-factory" in taken.stderr and "exists" in taken.stderr


def test_a_snapshot_file_replays_the_same_offline(world: World, tmp_path: Path) -> None:
    snapshot = aif(world.fed, "plan", "snapshot").stdout
    path = tmp_path / "fed.json"
    path.write_text(snapshot)
    served = world.fed.api("GET", "/planning/snapshot")
    assert {**json.loads(snapshot), "taken_at": None} == {**served, "taken_at": None}
    args = (*SMALL, "--add-factory", "Nova:1024:8:PL", "--json")
    online = json.loads(aif(world.fed, "plan", *args).stdout)
    offline = json.loads(aif(world.fed, "plan", "--registry", str(path), *args).stdout)
    assert offline == online
    assert online["after"]["factories"]["Nova"]["gpus"] == 1024


def test_the_job_history_is_for_staff(world: World) -> None:
    refused = aif(world.fed, "plan", "--history", code=1)
    assert "federation admins and factory operators" in refused.stderr
    report = json.loads(aif(world.fed, "plan", "--history", "--json", token=world.admin).stdout)
    assert report["workload"]["source"] == "the federation's job history"
    assert report["workload"]["jobs"] == 1 == report["before"]["jobs"]
