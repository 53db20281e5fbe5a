"""`aif sessions`: JupyterLab or a terminal on a factory, as a job of yours, in your browser."""

from __future__ import annotations

import time as clock
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, plural, print_json, to_jsonable

if TYPE_CHECKING:
    from aifactory.services.interactive import SessionView

sessions_app = typer.Typer(
    help="Interactive sessions: JupyterLab (or a terminal) run as your job, opened in a browser.",
    no_args_is_help=True,
)


def install(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")


@sessions_app.command("start")
@friendly
def start(
    project: Annotated[str, typer.Option(help="project ID the GPU time is charged to")],
    kind: Annotated[str, typer.Option(help="jupyter, or shell (a terminal)")] = "jupyter",
    gpus: Annotated[int, typer.Option(help="GPUs (0-64)")] = 0,
    time: Annotated[str, typer.Option(help="how long it may run: 3600, 90m, 2h, 01:30:00")] = "2h",
    idle_timeout: Annotated[
        str, typer.Option(help="stopped after this long unused (e.g. 30m, 1h)")
    ] = "1h",
    wait: Annotated[bool, typer.Option(help="wait until it answers, then print its URL")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Start a session; it runs as a job of the project, as you, charged GPUs x time."""
    spec: dict[str, Any] = {
        "project": project,
        "kind": kind,
        "gpus": gpus,
        "time": time,
        "idle_timeout": idle_timeout,
    }
    with client() as api:
        view = api.start_session(spec)
        if wait:
            view = _follow(api, view, quiet=as_json)
        _show(view, as_json, api.session_url(view))


@sessions_app.command("list")
@friendly
def list_(
    all_: Annotated[bool, typer.Option("--all", help="ended ones too")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Your sessions."""
    from rich.table import Table

    from aifactory.cli.render import console

    with client() as api:
        views = api.list_sessions(all_)
        urls = {v.id: api.session_url(v) for v in views}
    if as_json:
        print_json(views)
        return
    table = Table("id", "kind", "project", "GPUs", "state", "job", "URL / reason")
    for v in views:
        where = urls[v.id] if v.state == "ready" else v.reason
        job = str(v.job_id) if v.job_id is not None else ""
        table.add_row(str(v.id), v.kind, v.project, str(v.gpus), v.state, job, where)
    console.print(table if views else "no sessions")


@sessions_app.command("show")
@friendly
def show(session_id: int, as_json: JsonOpt = False) -> None:
    """A session: state, its job, GPU-hours charged, and where it is served."""
    with client() as api:
        view = api.get_session(session_id)
        _show(view, as_json, api.session_url(view))


@sessions_app.command("stop")
@friendly
def stop(session_id: int, as_json: JsonOpt = False) -> None:
    """Stop a session: its job is cancelled and charged for the time it ran."""
    with client() as api:
        view = api.stop_session(session_id)
        _show(view, as_json, api.session_url(view))


def _follow(api: Any, view: SessionView, quiet: bool) -> SessionView:
    """Follow the session until it is ready (or over), printing each change unless ``quiet``."""
    from aifactory.cli.render import console

    seen = ""
    while True:
        line = f"session {view.id}: {view.state}" + (f" ({view.reason})" if view.reason else "")
        if line != seen and not quiet:
            console.print(line)
        seen = line
        if view.state in ("ready", "stopping", "ended"):
            return view
        clock.sleep(1.0)
        view = api.get_session(view.id)


def _show(view: SessionView, as_json: bool, url: str) -> None:
    from aifactory.cli.render import console

    if as_json:
        print_json(to_jsonable(view) | {"url": url})  # the API's JSON, and where to open it
        return
    console.print(
        f"session [bold]{view.id}[/bold] ({view.kind}, {plural(view.gpus, 'GPU')}, "
        f"project {view.project}): "
        f"{view.state}" + (f" ({view.reason})" if view.reason else "")
    )
    if view.job_id is not None:
        console.print(
            f"job {view.job_id} ({view.job_state}), "
            f"{plural(view.charged_gpu_hours, 'GPU-hour')} charged"
        )
    if view.state == "ready":
        console.print(f"open (signed in to the portal): {url}")
        print(url)
