"""`aif submit FILE --dry-run [--json]`: what would be submitted, without a server or a token.

Shows the job spec as the platform would store it, every note on the script's directives, and
for a Slurm site the sbatch argv and batch script it would receive (rendered by the executor's
own :func:`~aifactory.executors.slurm.script.render_script`; partition and account are
placeholders, since the broker places the job and the site maps the project to its account).
"""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from aifactory.cli.output import plural
from aifactory.cli.render import console
from aifactory.domain.jobspec import JobSpec, parse_spec

__all__ = ["DRY_RUN_JOB_ROOT", "dry_run"]

DRY_RUN_JOB_ROOT = "/scratch/aifactory/jobs"
PARTITION_PLACEHOLDER = "PLACED-BY-BROKER"
ACCOUNT_PLACEHOLDER = "PROJECT-ACCOUNT"
_PROJECT_PLACEHOLDER = "PROJECT"


def _slurm(spec: JobSpec) -> dict[str, Any]:
    """sbatch argv and script for the first attempt (the first task of an array)."""
    from aifactory.executors.from_spec import exec_job
    from aifactory.executors.slurm.commands import Sbatch
    from aifactory.executors.slurm.script import ScriptOptions, render_script

    indices, _ = spec.tasks()
    job = exec_job(
        spec,
        exec_id="dry-run",
        platform_id="dry-run",
        array_id=0 if indices else None,
        array_task=indices[0] if indices else None,
    )
    account = spec.project.lower() if spec.project != _PROJECT_PLACEHOLDER else None
    options = ScriptOptions(
        job_root=DRY_RUN_JOB_ROOT,
        partition=PARTITION_PLACEHOLDER,
        account=account or ACCOUNT_PLACEHOLDER,
    )
    rendered = render_script(job, options)
    return {"argv": Sbatch().build(), "script": rendered.text}


def dry_run(spec_data: dict[str, Any], notes: list[dict[str, str]], as_json: bool) -> None:
    """Validate ``spec_data`` as the server would and print the result.

    Raises:
        Invalid: The spec breaks a rule (one detail per field), or the renderer refuses it.
    """
    given_project = spec_data.get("project")
    spec = parse_spec({**spec_data, "project": given_project or _PROJECT_PLACEHOLDER})
    stored = spec.model_dump(mode="json")
    if not given_project:
        stored["project"] = None
    result = {"spec": stored, "notes": notes, "slurm": _slurm(spec)}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    _print_readable(result)


def _print_readable(result: dict[str, Any]) -> None:
    spec = result["spec"]
    r = spec["resources"]
    console.print(f"[bold]dry run[/bold]: job {escape(spec['name'])} (nothing submitted)")
    if spec["project"] is None:
        console.print("[yellow]no project[/yellow]: give --project or `project:` in the file")
    gpus = plural(r["gpus_per_node"], "GPU") + (f" {r['gpu_model']}" if r["gpu_model"] else "")
    console.print(
        f"  {plural(r['nodes'], 'node')} x {gpus}, time limit {r['time_limit']} s"
        + (f", array {spec['array']}" if spec["array"] else "")
    )
    if spec.get("prefer_sites"):
        console.print(f"  prefers {escape(', '.join(spec['prefer_sites']))} (placement)")
    for note in result["notes"]:
        console.print(f"  [yellow]•[/yellow] {escape(note['message'])}")
    slurm = result["slurm"]
    console.print(f"\n[bold]Slurm[/bold]: {' '.join(slurm['argv'])} < script")
    console.print(slurm["script"], markup=False, highlight=False, soft_wrap=True)
    console.print("[bold]spec[/bold]:")
    console.print(json.dumps(spec, indent=2), markup=False, highlight=False, soft_wrap=True)
