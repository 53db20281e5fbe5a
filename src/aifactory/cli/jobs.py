"""`aif submit`, `aif jobs list|show|cancel|why`, `aif logs JOB [--follow]` (all with --json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.follow import follow_json, follow_to_end
from aifactory.cli.output import JsonOpt, emit, err_console, print_json
from aifactory.cli.render import console
from aifactory.cli.render_jobs import job_detail, jobs_table
from aifactory.domain.words import start_in, start_words
from aifactory.errors import FieldError, Invalid

if TYPE_CHECKING:
    from aifactory.client import Client
    from aifactory.services.job_views import JobView, PlacementView

jobs_app = typer.Typer(help="Your jobs: state, placement reasons, cancel.", no_args_is_help=True)


def read_spec(
    path: Path, args: list[str] | None = None
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A job spec from YAML/JSON, or from an existing Slurm batch script (``#!`` and
    ``#SBATCH``), with the notes on the script's directives; ``args`` (after ``--`` on the
    command line) become the script's arguments, replacing any in the file."""
    from aifactory.domain.jobspec import MAX_SPEC_BYTES  # pydantic: not for `aif --help`

    if not path.is_file():
        raise Invalid.field("file", "exists", f"{path} is not a readable file")
    if path.stat().st_size > MAX_SPEC_BYTES:
        raise Invalid.field("file", "max_size", f"{path} is over 1 MiB")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".sbatch", ".slurm", ".sh") or text.startswith("#!"):
        spec, notes = spec_from_sbatch(text, path.name)
    else:
        spec, notes = _spec_file(path, text), []
    if args:
        spec["args"] = list(args)
    return spec, notes


def _spec_file(path: Path, text: str) -> dict[str, Any]:
    import yaml

    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise Invalid.field("file", "syntax", f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise Invalid.field("file", "mapping", f"{path} must hold a mapping of spec fields")
    return _bare_on(data)


def _bare_on(data: dict[Any, Any]) -> dict[Any, Any]:
    """``retry: {on: [...]}`` as meant: YAML 1.1 (PyYAML) reads a bare ``on`` key as true,
    which would reach the API as the key ``"true"``."""
    retry = data.get("retry")
    if isinstance(retry, dict) and True in retry and "on" not in retry:
        data["retry"] = {("on" if k is True else k): v for k, v in retry.items()}
    return data


def spec_from_sbatch(text: str, file_name: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A job spec from an existing batch script, read as sbatch reads it (see
    :func:`~aifactory.executors.slurm.sbatch_import.import_sbatch`): the whole script runs as
    the job, its ``#SBATCH`` directives become the spec's resources.

    Raises:
        Invalid: sbatch would refuse the script, or a directive asks for what the platform
            cannot do (every refused directive is listed).
    """
    from aifactory.executors.slurm.sbatch_import import import_sbatch  # only for scripts

    imported = import_sbatch(text, default_name=file_name)
    return imported.spec, [note.as_dict() for note in imported.notes]


def submit(
    file: Annotated[Path, typer.Argument(help="job.yaml, job.json or train.sbatch")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="arguments for the script, after -- (aif submit train.sbatch -- a b)"),
    ] = None,
    project: Annotated[str | None, typer.Option(help="project ID (overrides the file)")] = None,
    follow: Annotated[bool, typer.Option(help="follow state and logs until it ends")] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            help="reuse a key to submit at most once across runs of a script (default: new)"
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="submit nothing: print the spec, the notes and the Slurm script (no server)",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the job (or the --dry-run result) as JSON")
    ] = False,
) -> None:
    """Submit a job once; the broker picks the factory and says why.

    A dropped connection is retried with the same idempotency key: one job at most.

    A batch script is read as sbatch reads it; a refused directive exits with status 2.
    """
    if as_json and follow:
        raise typer.BadParameter("--json does not go with --follow", param_hint="--json")
    spec, notes = _read_or_exit(file, args or [], as_json)
    if project:
        spec["project"] = project
    _submit_dir(spec)
    if dry_run:
        _dry_run(spec, notes, as_json)
        return
    _submit(spec, notes, follow, idempotency_key, as_json)


def _submit_dir(spec: dict[str, Any]) -> None:
    """Tell the job where it was submitted from (``AIF_SUBMIT_DIR``, like Slurm's
    ``SLURM_SUBMIT_DIR``): it works in its own directory but may read its code from there."""
    env = spec.get("environment")
    if env is None or isinstance(env, dict):
        spec["environment"] = {"AIF_SUBMIT_DIR": str(Path.cwd()), **(env or {})}


def _dry_run(spec: dict[str, Any], notes: list[dict[str, str]], as_json: bool) -> None:
    from aifactory.cli.dry_run import dry_run

    try:
        dry_run(spec, notes, as_json)
    except Invalid as exc:
        _refused(exc, as_json)


def _read_or_exit(
    file: Path, args: list[str], as_json: bool
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The spec and notes; a file that cannot be read as a spec exits with status 2."""
    try:
        return read_spec(file, args)
    except Invalid as exc:
        _refused(exc, as_json)


def _refused(exc: Invalid, as_json: bool) -> NoReturn:
    """Print why the file cannot be submitted (like ``friendly``, with the script's other
    notes first) and exit with status 2."""
    notes = exc.extra.get("notes", [])
    if as_json:
        errors = [d.as_dict() for d in exc.details]
        print(json.dumps({"error": exc.message, "details": errors, "notes": notes}, indent=2))
        raise typer.Exit(2)
    for note in notes:
        if note.get("action") != "refused":
            err_console.print(f"[yellow]note:[/yellow] {escape(note['message'])}")
    err_console.print(f"[red]error ({exc.code}):[/red] {escape(exc.message)}")
    for d in exc.details:
        err_console.print(
            f"  [red]•[/red] {escape(d.field)}: {escape(d.message)} [dim]({escape(d.rule)})[/dim]"
        )
    raise typer.Exit(2)


@friendly
def _submit(
    spec: dict[str, Any],
    notes: list[dict[str, str]],
    follow: bool,
    key: str | None = None,
    as_json: bool = False,
) -> None:
    for note in notes:
        (err_console if as_json else console).print(
            f"[yellow]note:[/yellow] {escape(note['message'])}"
        )
    with client() as c:
        job = _submit_job(c, spec, key)
        if as_json:
            print_json(job)
            return
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
    as_json: JsonOpt = False,
) -> None:
    """Newest jobs first (with --json: the API's page, {"jobs", "next_before"})."""
    with client() as c:
        page = c.list_jobs(project, state, limit, array=array)
    emit(page, as_json, jobs_table(page.jobs))


@jobs_app.command("show")
@friendly
def jobs_show(job_id: int, as_json: JsonOpt = False) -> None:
    """A job with its attempts and state history."""
    with client() as c:
        job = c.get_job(job_id)
    emit(job, as_json, *job_detail(job))


@jobs_app.command("cancel")
@friendly
def jobs_cancel(
    job_id: int,
    array: Annotated[bool, typer.Option(help="cancel every unfinished task of its array")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a job (its whole process group / Slurm job), or with --array its whole array."""
    with client() as c:
        job = c.cancel_job(job_id, whole_array=array)
    which = f"array {job.array_id}" if array else f"job {job.id}"
    line = f"cancellation of {which} requested (state of job {job.id} now {job.state})"
    emit(job, as_json, line)


@jobs_app.command("why")
@friendly
def jobs_why(job_id: int, as_json: JsonOpt = False) -> None:
    """Where the broker placed a job, and why every other candidate was not chosen."""
    with client() as c:
        placement = c.why_job(job_id)
    emit(placement, as_json, why_table(placement))


@friendly
def logs(
    job_id: int,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until it ends")
    ] = False,
    stream: Annotated[str, typer.Option(help="stdout or stderr")] = "stdout",
    as_json: Annotated[
        bool, typer.Option("--json", help="the API's log chunk; with --follow, JSON lines")
    ] = False,
) -> None:
    """Print a job's log; with --follow, keep going (with a live state line) until it ends."""
    with client() as c:
        if follow:
            (follow_json if as_json else follow_to_end)(c, job_id, stream)
            return
        chunk = c.job_logs(job_id, 0, stream)
    if as_json:
        print_json(chunk)
        return
    console.print(chunk.text, end="", markup=False, highlight=False)


def _submit_job(c: Client, spec: dict[str, Any], key: str | None) -> JobView:
    """Submit; a missing project, or one the caller is not in, is refused with the caller's
    own projects named (the shipped examples leave the project to --project)."""
    try:
        return c.submit_job(spec, idempotency_key=key)
    except Invalid as exc:
        if not any(d.field == "project" for d in exc.details):
            raise
        codes = ", ".join(p.code for p in c.list_projects()) or "none yet (see aif calls list)"
        hint = f"give one of your projects with --project CODE or `project:` in the file: {codes}"
        details = [*exc.details, FieldError("project", "your_project", hint)]
        raise Invalid(exc.message, details) from None


def why_table(p: PlacementView) -> Table:
    """Every candidate site with its verdict, reason, free GPUs, queue ahead and estimate."""
    if not p.candidates:
        return _decision_table(p)
    table = Table(title=f"Placement of job {p.job_id} ({p.policy} policy)", header_style="bold")
    for col in ("Site", "Verdict", "GPUs free", "Queued ahead", "Start", "Why"):
        table.add_column(col)
    for c in p.candidates:
        verdict = _VERDICTS.get(c.verdict, c.verdict) + (" ★" if c.preferred else "")
        free = f"{c.free_gpus} of {c.total_gpus}" if c.total_gpus is not None else "-"
        queued = f"{c.queued_gpu_hours:g} GPU-h" if c.queued_gpu_hours is not None else "-"
        start = start_words(c.est_start_s, c.basis) if c.est_start_s is not None else "-"
        table.add_row(c.site, verdict, free, queued, start, escape(c.reason))
    if p.waiting:
        table.add_row("-", "[yellow]waiting[/yellow]", "", "", "", escape(p.waiting))
    return table


_VERDICTS = {
    "chosen": "[green]chosen[/green]",
    "would start": "[green]would start[/green]",
    "waits": "[yellow]waits[/yellow]",
    "rejected": "[red]rejected[/red]",
}


def _decision_table(p: PlacementView) -> Table:
    """The decision as recorded (a finished job: no live figures)."""
    table = Table(title=f"Placement of job {p.job_id} ({p.policy} policy)", header_style="bold")
    for col in ("Site", "Verdict", "Why"):
        table.add_column(col)
    for name in p.ranked:
        verdict = "[green]chosen[/green]" if name == p.chosen else "candidate"
        start = p.est_start_s.get(name)
        table.add_row(name, verdict, f"fits; {start_in(start)}" if start is not None else "fits")
    for name, reason in p.rejected.items():
        table.add_row(name, "[red]rejected[/red]", reason)
    if p.waiting:
        table.add_row("-", "[yellow]waiting[/yellow]", p.waiting)
    return table


def install(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("logs")(logs)
    app.add_typer(jobs_app, name="jobs")
