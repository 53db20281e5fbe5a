"""`aif submit FILE --dry-run [--json]`: no server, no login; spec, notes and the Slurm script."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aifactory.cli.main import app
from aifactory.domain.jobspec import parse_spec
from aifactory.executors.from_spec import exec_resources

runner = CliRunner()
CORPUS = Path(__file__).resolve().parents[2] / "fixtures" / "sbatch"


@pytest.fixture
def offline(tmp_path: Path) -> dict[str, str]:
    """No stored login, and a server address where nothing listens."""
    return {
        "AIF_CONFIG_DIR": str(tmp_path / "cfg"),
        "AIF_URL": "http://127.0.0.1:9",
        "AIF_TOKEN": "",
    }


def aif(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == code, result.output
    return result.output


def dry_json(env: dict[str, str], file: str, *args: str, code: int = 0) -> dict[str, Any]:
    return dict(json.loads(aif(env, "submit", file, "--dry-run", "--json", *args, code=code)))


def test_dry_run_json_of_a_batch_script_with_args(offline: dict[str, str], tmp_path: Path) -> None:
    script = shutil.copy(CORPUS / "02_short_options.sbatch", tmp_path / "sft.sbatch")
    out = dry_json(offline, str(script), "--project", "EHPC-AIF-1", "--", "--lr", "3e-4")
    spec = out["spec"]
    assert spec["name"] == "llama-sft" and spec["project"] == "EHPC-AIF-1"
    assert spec["args"] == ["--lr", "3e-4"] and spec["script"].startswith("#!/bin/bash\n")
    r = spec["resources"]
    assert (r["nodes"], r["gpus_per_node"], r["tasks_per_node"], r["cpus_per_task"]) == (
        2,
        4,
        4,
        12,
    )
    actions = {n["directive"]: n["action"] for n in out["notes"]}
    assert actions["--partition=gpu"] == "replaced" and actions["--gpus=8"] == "adjusted"
    assert all(n["message"] for n in out["notes"])
    assert out["slurm"]["argv"] == ["sbatch", "--parsable"]
    text = out["slurm"]["script"]
    assert text.startswith("#!") and "#SBATCH --nodes=2" in text
    assert "#SBATCH --account=ehpc-aif-1" in text and "--lr 3e-4" in text


def test_dry_run_of_an_array_renders_its_first_task(
    offline: dict[str, str], tmp_path: Path
) -> None:
    script = shutil.copy(CORPUS / "14_array_list_step.sbatch", tmp_path / "eval.sbatch")
    out = dry_json(offline, str(script))
    assert out["spec"]["array"] == "1,3,5-11:2" and out["spec"]["project"] is None
    assert "#SBATCH --array=1\n" in out["slurm"]["script"]


def test_readable_dry_run_lists_every_note(offline: dict[str, str], tmp_path: Path) -> None:
    script = shutil.copy(CORPUS / "27_ignored_options.sbatch", tmp_path / "x.sbatch")
    out = aif(offline, "submit", str(script), "--dry-run")
    assert "nothing submitted" in out and "sbatch --parsable" in out
    for option in ("--qos=high", "--export=ALL", "--hint", "--gpu-bind", "--nice=10"):
        assert option in out
    assert out.count(" ignored: ") == 6


def test_refused_script_exits_2_with_every_refusal(offline: dict[str, str]) -> None:
    path = str(CORPUS / "26_unsupported_refused.sbatch")
    out = aif(offline, "submit", path, "--dry-run", code=2)
    for option in ("--dependency", "--reservation", "--begin", "--nodelist"):
        assert f"sbatch.{option}" in out
    assert "mail-user" in out and "Traceback" not in out
    found = dry_json(offline, path, code=2)
    assert len(found["details"]) == 4 and len(found["notes"]) == 6


def test_yaml_spec_with_a_script_takes_args_and_a_command_spec_does_not(
    offline: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "script": "#!/bin/sh\necho $1\n"}))
    out = dry_json(offline, str(path), "--", "one", "two")
    assert out["spec"]["args"] == ["one", "two"] and out["notes"] == []
    path.write_text(yaml.safe_dump({"name": "c", "command": ["echo"]}))
    found = dry_json(offline, str(path), "--", "one", code=2)
    assert "args are given to a script" in json.dumps(found["details"])


@pytest.mark.parametrize(
    ("resources", "expected"),
    [
        ({"nodes": 2, "tasks_per_node": 4, "memory_gb": 1.5}, {"nodes": 2, "memory_mb": 1536}),
        ({"whole_node_memory": True, "time_min": 60}, {"memory_mb": 0, "time_min_s": 60.0}),
        ({"memory_per_gpu_gb": 80, "cpus_per_task": 8}, {"memory_per_gpu_mb": 81920}),
        ({"memory_per_cpu_gb": 0.25}, {"memory_per_cpu_mb": 256, "memory_mb": None}),
    ],
)
def test_resources_reach_the_executor_in_its_units(
    resources: dict[str, Any], expected: dict[str, Any]
) -> None:
    spec = parse_spec({"name": "x", "project": "P", "command": "true", "resources": resources})
    fields = exec_resources(spec)
    assert {k: fields[k] for k in expected} == expected
