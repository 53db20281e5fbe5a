"""Running the federation: `aif serve`, `aif controller`, `aif status`."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit, plural
from aifactory.cli.render import console

if TYPE_CHECKING:
    from rich.console import RenderableType

    from aifactory.services.health import SystemHealth


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: the serving controller's health checks (one per
    # replica a second) and the gateway's calls would drown everything else.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@friendly
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on (AIF_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on (AIF_PORT)")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API worker processes")] = 1,
    controllers: Annotated[
        bool | None,
        typer.Option(
            "--controllers/--no-controllers",
            help="also run the broker and site agents here (default: AIF_RUN_AGENTS, true)",
        ),
    ] = None,
) -> None:
    """Run the federation: the API and its controllers (broker and one agent per factory)."""
    from aifactory.server import serve as run
    from aifactory.services.setup import prepare
    from aifactory.settings import load_settings

    settings = load_settings()
    db = prepare(settings)
    run_controllers = settings.run_agents if controllers is None else controllers
    _logging()
    console.print(f"database: {db.engine.url.render_as_string(hide_password=True)}")
    console.print(
        f"API on http://{host or settings.host}:{port or settings.port} "
        f"({plural(workers, 'worker')}); "
        + ("controllers running here" if run_controllers else "no controllers here")
    )
    run(
        settings,
        db,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        controllers=run_controllers,
    )


@friendly
def controller(
    site: Annotated[
        list[str] | None, typer.Option(help="run only this factory's agent (repeatable)")
    ] = None,
    broker: Annotated[
        bool | None,
        typer.Option("--broker/--no-broker", help="run the broker (default: unless --site)"),
    ] = None,
) -> None:
    """Run controllers without the API, until interrupted (several may share one PostgreSQL)."""
    from aifactory.agents.runner import AgentRunner
    from aifactory.services.setup import prepare
    from aifactory.settings import load_settings

    settings = load_settings()
    db = prepare(settings)
    _logging()
    runner = AgentRunner(settings, db, sites=site, broker=not site if broker is None else broker)
    names = ", ".join(a.name for a in runner.agents) or "no sites"
    runner.start()
    console.print(f"controller {runner.holder}: {names}; broker {'on' if runner.broker else 'off'}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    runner.stop()
    console.print("controller stopped; its leases are released")


@friendly
def status(as_json: JsonOpt = False) -> None:
    """Are the controllers alive? Who holds each site, when did it last answer, what waits?"""
    with client() as c:
        health = c.status()
    emit(health, as_json, *_health(health))
    if not health.controllers_alive:
        raise typer.Exit(1)


def _health(health: SystemHealth) -> list[RenderableType]:
    alive = "[green]alive[/green]" if health.controllers_alive else "[red]NONE ALIVE[/red]"
    shown: list[RenderableType] = [
        f"controllers: {alive}; broker lease: {health.broker_lease_holder or '[red]none[/red]'}; "
        f"pending {health.pending_jobs}, placed {health.placed_jobs}"
    ]
    if health.oldest_handover:
        w = health.oldest_handover
        shown.append(
            f"oldest job waiting for hand-over: {w.job_id} on {w.factory}, {w.waited_s:g} s"
        )
    procs = Table(title="Controllers", header_style="bold")
    for col in ("Holder", "Alive", "Last seen", "Holds"):
        procs.add_column(col)
    for p in health.controllers:
        procs.add_row(p.holder, "yes" if p.alive else "[red]no[/red]", _t(p.seen_at), p.scope)
    sites = Table(title="Sites", header_style="bold")
    for col in ("Factory", "Lease holder", "Scheduler", "Last contact"):
        sites.add_column(col)
    for s in health.sites:
        holder = s.lease_holder if s.lease_valid else "[red]none[/red]"
        answer = "answers" if s.available else f"[red]down[/red] {s.reason}"
        sites.add_row(s.factory, holder or "-", answer, _t(s.last_contact_at))
    return [*shown, procs, sites]


def _t(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at else "-"


def install(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("controller")(controller)
    app.command("status")(status)
