"""`aif submit`, `aif jobs list|show|cancel|why`, `aif logs JOB [--follow]`."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.live import Live
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.render import console
from aifactory.client import Client
from aifactory.domain.jobs import TERMINAL, JobState
from aifactory.domain.jobspec import MAX_SPEC_BYTES
from aifactory.errors import Invalid
from aifactory.executors.slurm.sbatch_import import import_sbatch
from aifactory.services.job_views import JobView, LogChunk, PlacementView

jobs_app = typer.Typer(help="Your jobs: state, placement reasons, cancel.", no_args_is_help=True)


def read_spec(path: Path) -> tuple[dict[str, Any], list[str]]:
    """A job spec from YAML/JSON, or from an existing Slurm batch script (``#SBATCH``)."""
    if not path.is_file():
        raise Invalid.field("file", "exists", f"{path} is not a readable file")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise Invalid.field("file", "max_size", f"{path} is over 1 MiB")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".sbatch", ".slurm", ".sh") or text.startswith("#!"):
        return spec_from_sbatch(text, path.stem)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise Invalid.field("file", "syntax", f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid.field("file", "mapping", f"{path} must hold a mapping of spec fields")
    return _bare_on(data), []


def _bare_on(data: dict[Any, Any]) -> dict[Any, Any]:
    """``retry: {on: [...]}`` as meant: YAML 1.1 (PyYAML) reads a bare ``on`` key as true,
    which would reach the API as the key ``"true"``."""
    retry = data.get("retry")
    if isinstance(retry, dict) and True in retry and "on" not in retry:
        data["retry"] = {("on" if k is True else k): v for k, v in retry.items()}
    return data


def spec_from_sbatch(text: str, stem: str) -> tuple[dict[str, Any], list[str]]:
    """A job spec from an existing batch script: its ``#SBATCH`` directives and its body."""
    imported, warnings = import_sbatch(text)
    res = dict(imported.get("resources") or {})
    if "time_limit_s" in res:
        res["time_limit"] = res.pop("time_limit_s")
    resources = {k: v for k, v in res.items() if v is not None}
    for key in ("output", "error"):
        if imported.get(key):
            warnings.append(f"--{key}={imported[key]} ignored: the platform keeps job logs")
    name = imported.get("name") or re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-") or "job"
    body = str(imported.get("command") or "").strip()
    if not body:
        raise Invalid.field("script", "non_empty", "the batch script has no commands")
    return {"name": name, "resources": resources, "script": "#!/bin/bash\n" + body + "\n"}, warnings


def submit(
    file: Annotated[Path, typer.Argument(help="job.yaml, job.json or train.sbatch")],
    project: Annotated[str | None, typer.Option(help="project ID (overrides the file)")] = None,
    follow: Annotated[bool, typer.Option(help="follow state and logs until it ends")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="reuse a key to submit at most once across runs of a script (default: new)"
        ),
    ] = None,
) -> None:
    """Submit a job once; the broker picks the factory and says why.

    A dropped connection is retried with the same idempotency key: one job at most.
    """
    _submit(file, project, follow, idempotency_key)


@friendly
def _submit(file: Path, project: str | None, follow: bool, key: str | None = None) -> None:
    spec, warnings = read_spec(file)
    for warning in warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if project:
        spec["project"] = project
    with client() as c:
        job = c.submit_job(spec, idempotency_key=key)
        console.print(f"job [bold]{job.id}[/bold] {job.state} on {job.factory or '-'}")
        console.print(why_table(c.why_job(job.id)))
        if follow:
            follow_to_end(c, job.id)


@jobs_app.command("list")
@friendly
def jobs_list(
    project: Annotated[str | None, typer.Option(help="project ID")] = None,
    state: Annotated[str | None, typer.Option(help="e.g. running")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    array: Annotated[int | None, typer.Option(help="only the tasks of this job array")] = None,
) -> None:
    """Newest jobs first."""
    with client() as c:
        console.print(jobs_table(c.list_jobs(project, state, limit, array=array).jobs))


@jobs_app.command("show")
@friendly
def jobs_show(job_id: int) -> None:
    """A job with its attempts and state history."""
    with client() as c:
        job = c.get_job(job_id)
    console.print(jobs_table([job]))
    history = Table(title="History", header_style="bold")
    for col in ("When", "From", "To", "Reason"):
        history.add_column(col)
    for t in job.transitions:
        history.add_row(
            t.at.isoformat(timespec="seconds"), t.from_state or "-", t.to_state, t.reason
        )
    console.print(history)
    attempts = Table(title="Attempts", header_style="bold")
    for col in ("#", "Factory", "Backend id", "State", "Exit", "Elapsed s", "GPU-h charged"):
        attempts.add_column(col)
    for a in job.attempts:
        attempts.add_row(
            str(a.attempt),
            a.factory,
            a.backend_id or "-",
            a.state,
            str(a.exit_code if a.exit_code is not None else "-"),
            f"{a.elapsed_s:.1f}",
            f"{a.charged_gpu_hours:.3f}",
        )
    console.print(attempts)


@jobs_app.command("cancel")
@friendly
def jobs_cancel(
    job_id: int,
    array: Annotated[bool, typer.Option(help="cancel every unfinished task of its array")] = False,
) -> None:
    """Cancel a job (its whole process group / Slurm job), or with --array its whole array."""
    with client() as c:
        job = c.cancel_job(job_id, whole_array=array)
    which = f"array {job.array_id}" if array else f"job {job.id}"
    console.print(f"cancellation of {which} requested (state of job {job.id} now {job.state})")


@jobs_app.command("why")
@friendly
def jobs_why(job_id: int) -> None:
    """Where the broker placed a job, and why every other candidate was not chosen."""
    with client() as c:
        console.print(why_table(c.why_job(job_id)))


@friendly
def logs(
    job_id: int,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until it ends")
    ] = False,
    stream: Annotated[str, typer.Option(help="stdout or stderr")] = "stdout",
) -> None:
    """Print a job's log; with --follow, keep going (with a live state line) until it ends."""
    with client() as c:
        if follow:
            follow_to_end(c, job_id, stream)
            return
        chunk = c.job_logs(job_id, 0, stream)
        console.print(chunk.text, end="", markup=False, highlight=False)


def follow_job(c: Client, job_id: int, stream: str = "stdout") -> JobView:
    """Stream every attempt's log and show the job's state live until it is final.

    A retried job goes from its end state back to ``pending`` with the next attempt number in
    the same transaction as the failure, so an end state read from the API is final; following
    stops once the job is in one and the current attempt's log has been read to its end.
    """
    attempt, offset = 1, 0
    with Live(console=console, refresh_per_second=4, transient=True) as live:
        while True:
            job = c.get_job(job_id)
            while attempt < job.attempt:  # a retry began: finish the earlier attempt's log
                _drain(c, live, job_id, attempt, offset, stream)
                attempt, offset = attempt + 1, 0
                live.console.print(f"--- attempt {attempt} ---", markup=False, highlight=False)
            chunk = log_chunk(c, job_id, offset, stream, attempt)
            _print(live, chunk.text)
            offset = chunk.next_offset
            live.update(
                f"[dim]job {job.id} {job.state} on {job.factory or '-'} "
                f"(attempt {job.attempt})[/dim]"
            )
            if job.state in TERMINAL and chunk.finished:
                break
            time.sleep(0.3)
    console.print(
        f"job {job.id} {job.state} (exit code {job.exit_code}), charged "
        f"{job.charged_gpu_hours:.3f} GPU-h"
    )
    return job


def follow_to_end(c: Client, job_id: int, stream: str = "stdout") -> JobView:
    """`follow_job`, then exit with status 1 unless the job completed."""
    job = follow_job(c, job_id, stream)
    if job.state != JobState.COMPLETED:
        console.print(
            f"[red]job {job.id} ended {job.state}[/red]: {job.reason or 'no reason given'}",
            highlight=False,
        )
        raise typer.Exit(1)
    return job


def log_chunk(c: Client, job_id: int, offset: int, stream: str, attempt: int) -> LogChunk:
    """One chunk of one attempt's log (the API's ``attempt`` parameter)."""
    return c.job_logs(job_id, offset, stream, attempt)


def _drain(c: Client, live: Live, job_id: int, attempt: int, offset: int, stream: str) -> None:
    """Print the rest of an attempt that has ended (its log no longer grows)."""
    while True:
        chunk = log_chunk(c, job_id, offset, stream, attempt)
        if not chunk.text:
            return
        _print(live, chunk.text)
        offset = chunk.next_offset


def _print(live: Live, text: str) -> None:
    if text:
        live.console.print(text, end="", markup=False, highlight=False)


def jobs_table(items: list[JobView]) -> Table:
    table = Table(title="Jobs", header_style="bold")
    for col in ("ID", "Name", "Project", "State", "Where", "GPUs", "Exit", "GPU-h"):
        table.add_column(col)
    for j in items:
        where = f"{j.factory}: {j.partition}" if j.factory else "-"
        table.add_row(
            str(j.id),
            j.name if j.array_task is None else f"{j.name}[{j.array_task}]",
            j.project,
            j.state,
            where,
            str(j.gpus),
            "-" if j.exit_code is None else str(j.exit_code),
            f"{j.charged_gpu_hours:.3f}",
        )
    return table


def why_table(p: PlacementView) -> Table:
    table = Table(title=f"Placement of job {p.job_id} ({p.policy} policy)", header_style="bold")
    for col in ("Site", "Verdict", "Why"):
        table.add_column(col)
    for name in p.ranked:
        verdict = "[green]chosen[/green]" if name == p.chosen else "candidate"
        start = p.est_start_s.get(name)
        table.add_row(
            name, verdict, f"fits; estimated start in {start:g} s" if start is not None else "fits"
        )
    for name, reason in p.rejected.items():
        table.add_row(name, "[red]rejected[/red]", reason)
    if p.waiting:
        table.add_row("-", "[yellow]waiting[/yellow]", p.waiting)
    return table


def install(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("logs")(logs)
    app.add_typer(jobs_app, name="jobs")
