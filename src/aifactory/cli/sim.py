"""`aif sim`: replay workload traces through the federation's policies."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aifactory.errors import Invalid
from aifactory.sim.machine import InvariantViolation
from aifactory.sim.model import SiteSpec, Trace
from aifactory.sim.runner import RunOutcome, load_trace, run_trace
from aifactory.sim.sites import load_sites

app = typer.Typer(help="Simulate workload traces through scheduling and placement policies.")
out_console = Console()
err_console = Console(stderr=True)

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
OperationalOpt = Annotated[
    bool,
    typer.Option(
        "--assume-operational", help="Treat every factory of a federation YAML as operational."
    ),
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input: message and exit code 2; a broken invariant is a bug: exit code 1."""
    try:
        yield
    except Invalid as exc:
        raise _fail(exc.message) from None
    except InvariantViolation as exc:
        raise _fail(f"simulator invariant violated (please report): {exc}", 1) from None


def _load(trace: Path, fmt: str, lenient: bool, capacity: int | None, estimate: bool) -> Trace:
    loaded = load_trace(
        trace, fmt, lenient=lenient, capacity=capacity, estimate_from_runtime=estimate
    )
    if loaded.skipped_lines:
        err_console.print(f"skipped {loaded.skipped_lines} malformed line(s) in {trace}")
    return loaded


@contextmanager
def _progress(label: str, total: int) -> Iterator[Callable[[int, int], None]]:
    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield update


def _simulate(
    loaded: Trace, policy: str, sites: list[SiteSpec] | None, placement: str
) -> RunOutcome:
    with _progress(f"{policy}", len(loaded.jobs)) as update:
        return run_trace(loaded, policy, sites=sites, placement=placement, progress=update)


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
    assume_operational: OperationalOpt = False,
) -> None:
    """Replay one trace with one scheduling policy and report metrics."""
    with _user_errors():
        specs = load_sites(sites, assume_operational=assume_operational) if sites else None
        loaded = _load(trace, fmt, lenient, capacity, estimate_from_runtime)
        outcome = _simulate(loaded, policy, specs, placement)
    m = outcome.metrics
    rows = [("overall", m["overall"])]
    if len(m["sites"]) > 1:
        rows += [(s["name"], s) for s in m["sites"]]
    out_console.print(_table(f"{loaded.name}: {policy}", "scope", rows))
    if m["overall"]["rejected"]:
        out_console.print(f"rejected jobs: {m['overall']['rejected']} {m['rejected_reasons']}")
    if out is not None:
        from aifactory.sim.output import write_outputs

        for path in write_outputs(outcome.result, m, out):
            out_console.print(f"wrote {path}")


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
    assume_operational: OperationalOpt = False,
) -> None:
    """Replay one trace under several policies: one table, one wait-time plot."""
    from aifactory.sim.output import plot_compare, wait_times

    rows: list[tuple[str, dict[str, Any]]] = []
    waits = {}
    with _user_errors():
        specs = load_sites(sites, assume_operational=assume_operational) if sites else None
        loaded = _load(trace, fmt, lenient, capacity, estimate_from_runtime)
        for policy in policies:
            outcome = _simulate(loaded, policy, specs, placement)
            rows.append((policy, outcome.metrics["overall"]))
            waits[policy] = wait_times(outcome.result)  # jobs are reused by the next run
    out_console.print(_table(f"{loaded.name}: policies compared", "policy", rows))
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(dict(rows), indent=2) + "\n", encoding="utf-8")
    out_console.print(f"wrote {plot_compare(waits, out / 'compare.png')}")
