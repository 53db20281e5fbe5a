"""Every job spec shipped under ``examples/`` passes `aif submit --dry-run` as it is.

The dry run reads the file as `aif submit` does (YAML, JSON or an sbatch script), validates it
with the server's own spec parser and renders the Slurm script a site would get; the shipped
files name no project (it is given with ``--project``). An endpoint spec's replica is a job spec
too, checked the same way. A broken example fails here, not in a newcomer's terminal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from aifactory.cli.dry_run import dry_run
from aifactory.cli.jobs import read_spec
from aifactory.domain.serving import EndpointSpec, parse_model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(
    p for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json", ".sbatch", ".slurm")
)


def test_the_examples_hold_job_specs() -> None:
    names = {p.relative_to(EXAMPLES).as_posix() for p in SPECS}
    assert {"jobs/hello.yaml", "jobs/resident.yaml", "train_gpt/job.yaml"} <= names


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.relative_to(EXAMPLES).as_posix())
def test_shipped_spec_passes_the_dry_run(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else None
    if isinstance(data, dict) and "replica" in data:  # an endpoint: its replica is a job spec
        endpoint = parse_model(EndpointSpec, data, "endpoint")
        spec, notes = {**endpoint.replica, "name": endpoint.name}, []
    else:
        spec, notes = read_spec(path)
        assert "project" not in spec, f"{path} names a project: leave it to --project"
    dry_run(spec, notes, as_json=True)
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["name"] and "#SBATCH" in result["slurm"]["script"]
    retry = (data or {}).get("retry") or {}
    assert True not in retry, f'{path}: quote the key "on" (YAML 1.1 reads a bare on as true)'
