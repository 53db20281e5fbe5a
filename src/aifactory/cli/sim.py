"""`aif sim`: replay workload traces through the federation's policies.

Imports are inside the commands: this module is loaded for every `aif sim ...` (help
included), and a run needs only the reader of its trace format and the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifactory.cli.common import fail
from aifactory.cli.output import JsonOpt, err_console, plural, print_json
from aifactory.cli.output import console as out_console
from aifactory.errors import Invalid

if TYPE_CHECKING:
    from rich.table import Table

    from aifactory.sim.model import SiteSpec, Trace
    from aifactory.sim.runner import RunOutcome
    from aifactory.sim.sweep import Scenario, ScenarioResult

app = typer.Typer(help="Simulate workload traces through scheduling and placement policies.")

TraceOpt = Annotated[
    Path,
    typer.Option(
        "--trace", help="Trace file (SWF, Philly, Pollux/Sia, Alibaba pods; plain or gzip)."
    ),
]
SitesOpt = Annotated[
    Path | None,
    typer.Option(
        "--sites", help="Sites or federation YAML; without it, one machine of the trace's size."
    ),
]
PlacementOpt = Annotated[
    str,
    typer.Option(
        "--placement",
        help="Placement policy for --sites: broker, home, least-loaded, earliest-start.",
    ),
]
LenientOpt = Annotated[
    bool, typer.Option("--lenient", help="Skip malformed trace lines and report how many.")
]
CapacityOpt = Annotated[
    int | None,
    typer.Option(
        "--capacity",
        help="Machine size, overriding the trace header (needed for GPU traces without --sites).",
    ),
]
FormatOpt = Annotated[
    str, typer.Option("--format", help="auto, swf, philly, pollux, alibaba-pods.")
]
EstimateOpt = Annotated[
    bool,
    typer.Option(
        "--estimate-from-runtime", help="Use run time as the estimate where a trace has none."
    ),
]
EstimatesOpt = Annotated[
    str,
    typer.Option(
        "--estimates",
        help="user: the trace's requested times (default); perfect: actual run times.",
    ),
]
FederationOpt = Annotated[
    str,
    typer.Option(
        "--federation",
        help="With --sites: central (default; jobs wait centrally and start as the live "
        "broker admits them) or route (each job joins a site queue on arrival).",
    ),
]
EventsOpt = Annotated[
    str,
    typer.Option(
        "--events",
        help="At equal times: completions-first (default) or arrivals-first (as pyss).",
    ),
]
ScheduleOpt = Annotated[
    str,
    typer.Option(
        "--schedule", help="When the scheduler runs: event (after every event; default) or "
        "timestamp (once per timestamp).",
    ),
]  # fmt: skip
OperationalOpt = Annotated[
    bool,
    typer.Option(
        "--assume-operational", help="Treat every factory of a federation YAML as operational."
    ),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input: message and exit code 2; a broken invariant is a bug: exit code 1."""
    from aifactory.sim.machine import InvariantViolation

    try:
        yield
    except Invalid as exc:
        raise fail(exc.message) from None
    except InvariantViolation as exc:
        raise fail(f"simulator invariant violated (please report): {exc}", 1) from None


def _sites(path: Path | None, assume_operational: bool) -> list[SiteSpec] | None:
    if path is None:
        return None
    from aifactory.sim.sites import load_sites

    return load_sites(path, assume_operational=assume_operational)


def _load(
    trace: Path,
    fmt: str,
    lenient: bool,
    capacity: int | None,
    estimate: bool,
    estimates: str = "user",
) -> Trace:
    from aifactory.sim.runner import load_trace

    loaded = load_trace(
        trace, fmt, lenient=lenient, capacity=capacity, estimate_from_runtime=estimate,
        estimates=estimates,
    )  # fmt: skip
    if loaded.skipped_lines:
        skipped = plural(loaded.skipped_lines, "malformed line")
        err_console.print(f"skipped {skipped} in {trace}")
    return loaded


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    # Redrawn by the updates themselves, not by a refresh thread: a sweep forks its worker
    # processes while the bar is up, and forking a process with threads is unsafe.
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True, auto_refresh=False,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done, refresh=True)

        yield update


def _simulate(
    loaded: Trace,
    policy: str,
    sites: list[SiteSpec] | None,
    placement: str,
    conventions: tuple[str, str, str] = ("central", "completions-first", "event"),
) -> RunOutcome:
    from aifactory.sim.runner import run_trace

    federation, events, schedule = conventions
    with _progress(f"{policy}", len(loaded.jobs)) as update:
        return run_trace(
            loaded, policy, sites=sites, placement=placement, progress=update,
            federation=federation, events=events, schedule=schedule,
        )  # fmt: skip


def _run_scenarios(
    loaded: Trace, scenarios: list[Scenario], workers: int | None
) -> list[ScenarioResult]:
    from aifactory.sim.policies import make_policy
    from aifactory.sim.sweep import run_scenarios

    for scenario in scenarios:
        make_policy(scenario.policy)  # a bad name fails here, before any process starts
    with _progress("scenarios", len(scenarios)) as update:
        return run_scenarios(loaded, scenarios, workers=workers, progress=update)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e6 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


_COLUMNS = (
    ("jobs", "jobs"), ("mean_wait_s", "mean wait (s)"), ("median_wait_s", "median wait (s)"),
    ("mean_response_s", "mean response (s)"), ("mean_bounded_slowdown", "mean bsld"),
    ("utilization", "utilization"), ("mean_queue_length", "mean queue"),
)  # fmt: skip


def _table(title: str, first: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    from rich.table import Table

    table = Table(title=title)
    table.add_column(first)
    for _, header in _COLUMNS:
        table.add_column(header, justify="right")
    for label, stats in rows:
        table.add_row(label, *(_fmt(stats.get(key, "-")) for key, _ in _COLUMNS))
    return table


@app.command()
def run(
    trace: TraceOpt,
    policy: Annotated[
        str, typer.Option("--policy", help="fcfs, easy, easy-sjbf, conservative.")
    ] = "easy",
    sites: SitesOpt = None,
    placement: PlacementOpt = "broker",
    lenient: LenientOpt = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory for metrics.json, CSVs and PNG plots.")
    ] = None,
    capacity: CapacityOpt = None,
    fmt: FormatOpt = "auto",
    estimate_from_runtime: EstimateOpt = False,
    estimates: EstimatesOpt = "user",
    federation: FederationOpt = "central",
    events: EventsOpt = "completions-first",
    schedule: ScheduleOpt = "event",
    assume_operational: OperationalOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Replay one trace with one scheduling policy and report metrics (--json: metrics.json)."""
    with _user_errors():
        specs = _sites(sites, assume_operational)
        loaded = _load(trace, fmt, lenient, capacity, estimate_from_runtime, estimates)
        outcome = _simulate(loaded, policy, specs, placement, (federation, events, schedule))
    m = outcome.metrics
    if as_json:
        print_json(m)
    else:
        _print_run(f"{loaded.name}: {policy}", m)
    if out is not None:
        from aifactory.sim.output import write_outputs

        for path in write_outputs(outcome.result, m, out):
            (err_console if as_json else out_console).print(f"wrote {path}")


def _print_run(title: str, m: dict[str, Any]) -> None:
    rows = [("overall", m["overall"])]
    if len(m["sites"]) > 1:
        rows += [(s["name"], s) for s in m["sites"]]
    out_console.print(_table(title, "scope", rows))
    if m["overall"]["rejected"]:
        out_console.print(f"rejected jobs: {m['overall']['rejected']} {m['rejected_reasons']}")


WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="Processes running scenarios (default: one per CPU)."),
]


@app.command()
def compare(
    trace: TraceOpt,
    policies: Annotated[
        list[str], typer.Option("--policy", help="Repeat for each policy to compare.")
    ],
    sites: SitesOpt = None,
    placement: PlacementOpt = "broker",
    lenient: LenientOpt = False,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for compare.png and compare.json.")
    ] = Path("sim-compare"),
    capacity: CapacityOpt = None,
    fmt: FormatOpt = "auto",
    estimate_from_runtime: EstimateOpt = False,
    estimates: EstimatesOpt = "user",
    federation: FederationOpt = "central",
    events: EventsOpt = "completions-first",
    schedule: ScheduleOpt = "event",
    assume_operational: OperationalOpt = False,
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay one trace under several policies: one table, one wait-time plot."""
    from aifactory.sim.sweep import Scenario

    with _user_errors():
        specs = _sites(sites, assume_operational)
        loaded = _load(trace, fmt, lenient, capacity, estimate_from_runtime, estimates)
        site_tuple = tuple(specs) if specs else None
        scenarios = [
            Scenario(p, p, sites=site_tuple, placement=placement, federation=federation,
                     events=events, schedule=schedule)
            for p in policies
        ]  # fmt: skip
        results = _run_scenarios(loaded, scenarios, workers)
    _report(f"{loaded.name}: policies compared", "policy", results, out, "compare", as_json)


@app.command()
def sweep(
    trace: TraceOpt,
    policies: Annotated[
        list[str] | None, typer.Option("--policy", help="Policies to try (repeat; easy).")
    ] = None,
    capacities: Annotated[
        list[int] | None, typer.Option("--capacity", help="Machine sizes to try (repeat).")
    ] = None,
    loads: Annotated[
        list[float] | None,
        typer.Option("--load", help="Arrival-rate factors to try (repeat); 1.2 = 20 % busier."),
    ] = None,
    lenient: LenientOpt = False,
    out: Annotated[
        Path, typer.Option("--out", help="Directory for sweep.png and sweep.json.")
    ] = Path("sim-sweep"),
    fmt: FormatOpt = "auto",
    estimate_from_runtime: EstimateOpt = False,
    estimates: EstimatesOpt = "user",
    events: EventsOpt = "completions-first",
    schedule: ScheduleOpt = "event",
    workers: WorkersOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """What-if: every combination of policy, machine size and load, run in parallel."""
    from aifactory.sim.sweep import Scenario

    with _user_errors():
        loaded = _load(trace, fmt, lenient, None, estimate_from_runtime, estimates)
        sizes: list[int | None] = list(capacities) if capacities else [None]
        scenarios = [
            Scenario(
                f"{p} cap={c or loaded.capacity} load={x:g}",
                p,
                c,
                x,
                events=events,
                schedule=schedule,
            )
            for p in policies or ["easy"]
            for c in sizes
            for x in (loads or [1.0])
        ]
        results = _run_scenarios(loaded, scenarios, workers)
    _report(f"{loaded.name}: what-if sweep", "scenario", results, out, "sweep", as_json)


def _report(
    title: str, first: str, results: list[ScenarioResult], out: Path, stem: str, as_json: bool
) -> None:
    """One table (--json: what ``<stem>.json`` holds, the overall metrics per scenario),
    ``<stem>.json`` and ``<stem>.png``."""
    import json

    from aifactory.sim.output import plot_compare

    rows = [(r.scenario.name, r.metrics["overall"]) for r in results]
    if as_json:
        print_json(dict(rows))
    else:
        out_console.print(_table(title, first, rows))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(dict(rows), indent=2) + "\n", encoding="utf-8")
    waits = {r.scenario.name: r.waits for r in results}
    say = err_console if as_json else out_console
    say.print(f"wrote {plot_compare(waits, out / f'{stem}.png')}")
