"""`aif plan`: what-if capacity planning from the live registry (or a snapshot of it).

Replays a workload on the federation as the registry has it ("before") and with the changes
given ("after"), and prints both side by side. Imports are inside the commands: `aif --help`
must not load the simulator (NumPy, matplotlib).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from aifactory.cli.common import fail
from aifactory.cli.output import JsonOpt, err_console, print_json
from aifactory.cli.output import console as out_console
from aifactory.errors import AIFactoryError, Invalid

if TYPE_CHECKING:
    from aifactory.sim.plan import Factory
    from aifactory.sim.plan_run import Workload

HELP = "What-if capacity planning: replay a workload before and after changes to the federation."
app = typer.Typer(help=HELP, invoke_without_command=True, no_args_is_help=False)

Many = Annotated[list[str] | None, typer.Option()]


@contextmanager
def _user_errors() -> Iterator[None]:
    """Bad input: the message and exit code 2; the API unreachable or refusing: exit code 1."""
    try:
        yield
    except Invalid as exc:
        raise fail(exc.message) from None
    except AIFactoryError as exc:
        raise fail(f"({exc.code}) {exc.message}", 1) from None


def _read_document(path: Path, option: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Invalid.field(option, "readable", f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Invalid.field(option, "format", f"{path} is not JSON or YAML: {exc}") from None


def _registry(path: Path | None, assume_operational: bool) -> list[Factory]:
    from aifactory.sim.plan import parse_snapshot

    if path is not None:
        data = _read_document(path, "--registry")
    else:
        from aifactory.cli.common import client

        with client() as c:
            data = c.planning_snapshot()
    return parse_snapshot(data, assume_operational=assume_operational)


def _added(specs: list[str]) -> list[Factory]:
    from aifactory.sim.plan import parse_add_factory, parse_snapshot

    out: list[Factory] = []
    for spec in specs:
        if spec.endswith((".yaml", ".yml", ".json")):
            out += parse_snapshot(_read_document(Path(spec), "--add-factory"))
        else:
            out.append(parse_add_factory(spec))
    return out


def _progress(label: str) -> Callable[[int, int], None]:
    """A progress line on stderr, redrawn in place on a terminal (long replays)."""
    tty = sys.stderr.isatty()
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.monotonic()
        if tty and (now - last[0] > 0.2 or done == total):
            last[0] = now
            sys.stderr.write(f"\r{label}: {done:,} of {total:,} jobs replayed")
            sys.stderr.flush()

    return update


def _replay(
    workload: Workload, factories: list[Factory], policy: str, placement: str, label: str
) -> dict[str, Any]:
    from aifactory.sim.plan_run import measure

    started = time.monotonic()
    result = measure(workload, factories, policy, placement, _progress(label))
    seconds = time.monotonic() - started
    end = "\r" if sys.stderr.isatty() else ""
    sys.stderr.write(
        f"{end}{label}: {len(workload.trace.jobs):,} jobs replayed in {seconds:.1f} s\n"
    )
    return result


def _print_table(report: dict[str, Any]) -> None:
    from rich.table import Table

    from aifactory.sim.plan_report import report_rows

    w = report["workload"]
    load = f"offered load {w['offered_load_before']:.2f} on the before federation"
    out_console.print(
        f"workload: {w['source']}, {w['jobs']:,} jobs ({load}; "
        f"{w['dropped_too_wide']:,} too wide for any partition left out)"
    )
    out_console.print("changes: " + ("; ".join(report["changes"]) or "none"))
    table = Table("", "before", "after", title="Capacity plan")
    for row in report_rows(report):
        table.add_row(*row)
    out_console.print(table)


WorkloadOpts = dict[str, Any]


def _workload(o: WorkloadOpts, before: list[Factory], after: list[Factory]) -> Workload:
    from aifactory.sim.plan_run import fit_workload

    chosen = [k for k in ("trace", "history", "synthetic") if o[k]]
    if len(chosen) > 1:
        raise Invalid.field("--trace", "exclusive", "give one of --trace, --history, --synthetic")
    trace, source = _load_workload(o, before)
    widest = min(
        max((p.gpus for f in fed if f.operational for p in f.partitions), default=0)
        for fed in (before, after)
    )
    capacity = sum(f.gpus for f in before if f.operational)
    return fit_workload(
        trace, source, widest, capacity, load=o["load"], keep_arrivals=bool(o["history"]),
        max_jobs=o["jobs"],
    )  # fmt: skip


def _load_workload(o: WorkloadOpts, before: list[Factory]) -> tuple[Any, str]:
    if o["trace"] is not None:
        from aifactory.sim.runner import load_trace

        return load_trace(o["trace"], o["format"], capacity=o["capacity"]), str(o["trace"])
    if o["history"]:
        from aifactory.cli.common import client
        from aifactory.sim.plan_run import history_trace

        with client() as c:
            rows = c.planning_history(o["since"])["jobs"]
        if not rows:
            raise Invalid.field("--history", "empty", "the federation has no finished jobs yet")
        return history_trace(rows), "the federation's job history"
    from aifactory.sim.synthetic import WorkloadModel, generate

    n = o["synthetic"] or 2000
    widest = max(p.gpus for f in before if f.operational for p in f.partitions)
    trace = generate(n, WorkloadModel(machine=min(256, widest), load=0.9), o["seed"])
    return trace, f"synthetic (Lublin-Feitelson model, {n:,} jobs, seed {o['seed']})"


def _run(o: WorkloadOpts, changes: WorkloadOpts, as_json: bool, out: Path | None) -> None:
    from aifactory.sim.plan import apply_changes
    from aifactory.sim.plan_run import compare
    from aifactory.sim.policies import make_policy

    for name in {"easy", changes["policy"]}:
        make_policy(name)  # a bad name fails before any replay
    before = _registry(o["registry"], o["assume_operational"])
    after, done = apply_changes(
        before, scales=changes["scale"], added=_added(changes["add"]), removed=changes["remove"]
    )
    workload = _workload(o, before, after)
    b = _replay(workload, before, "easy", "broker", "before")
    a = _replay(workload, after, changes["policy"], changes["placement"], "after")
    report = compare(workload, b, a, done)
    if out is not None:
        from aifactory.sim.plan_output import write_plan_outputs

        waits = {"before": b["_waits"], "after": a["_waits"]}
        for path in write_plan_outputs(report, waits, out):
            err_console.print(f"wrote {path}")
    if as_json:
        print_json(report)
    else:
        _print_table(report)


@app.callback()
def plan(
    ctx: typer.Context,
    registry: Annotated[
        Path | None,
        typer.Option("--registry", help="A snapshot file (`aif plan snapshot`); else the API."),
    ] = None,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="SWF or GPU trace (see `aif sim run`).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Trace format (auto, swf, ...).")] = "auto",
    capacity: Annotated[
        int | None, typer.Option("--capacity", help="The trace's own machine size (its load).")
    ] = None,
    history: Annotated[
        bool, typer.Option("--history", help="Replay the federation's own job history (staff).")
    ] = False,
    since: Annotated[
        str | None, typer.Option("--since", help="With --history: jobs since YYYY-MM-DD.")
    ] = None,
    synthetic: Annotated[
        int | None,
        typer.Option("--synthetic", help="N synthetic jobs (the default workload, N=2000)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic workload.")] = 1,
    load: Annotated[
        float | None,
        typer.Option(
            "--load",
            help="Offered load of the before federation (arrivals scaled to it); default: the "
            "trace's load on its own machine, 0.85 if unknown; history: as recorded.",
        ),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", help="Replay the first N jobs only.")
    ] = None,
    scale: Annotated[
        list[str] | None,
        typer.Option(
            "--scale",
            help="PARTITION=FACTOR: factory, factory/system, factory/system/partition or *.",
        ),
    ] = None,
    add_factory: Annotated[
        list[str] | None,
        typer.Option(
            "--add-factory", help=r"NAME:GPUS\[:GPUS_PER_NODE\[:COUNTRY]] or a YAML file."
        ),
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A factory to leave out.")
    ] = None,
    placement: Annotated[
        str, typer.Option("--placement", help="After: broker, home, least-loaded, earliest-start.")
    ] = "broker",
    policy: Annotated[
        str, typer.Option("--policy", help="After: fcfs, easy, easy-sjbf, conservative.")
    ] = "easy",
    assume_operational: Annotated[
        bool, typer.Option("--assume-operational", help="Count factories not yet operational.")
    ] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write plan.json and PNG plots here.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a workload on the registry's federation, before and after the changes given."""
    if ctx.invoked_subcommand is not None:
        return
    with _user_errors():
        if jobs is not None and jobs < 1:
            raise Invalid.field("--jobs", "positive", "--jobs must be at least 1")
        if load is not None and not 0 < load <= 2:
            raise Invalid.field("--load", "range", "--load must be in (0, 2]")
        if synthetic is not None and not 1 <= synthetic <= 1_000_000:
            raise Invalid.field("--synthetic", "range", "--synthetic must be 1..1,000,000")
        o = {
            "registry": registry, "trace": trace, "format": fmt, "capacity": capacity,
            "history": history, "since": _date(since), "synthetic": synthetic, "seed": seed,
            "load": load, "jobs": jobs, "assume_operational": assume_operational,
        }  # fmt: skip
        changes = {
            "scale": scale or [], "add": add_factory or [], "remove": remove or [],
            "placement": placement, "policy": policy,
        }  # fmt: skip
        _run(o, changes, as_json, out)


def _date(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid.field("--since", "format", f"{text!r}: give a date as YYYY-MM-DD") from None


@app.command("snapshot")
def snapshot_command(
    as_yaml: Annotated[bool, typer.Option("--yaml", help="YAML instead of JSON.")] = False,
) -> None:
    """Print the registry's planning snapshot (for `aif plan --registry FILE`, offline)."""
    from aifactory.cli.common import client

    with _user_errors(), client() as c:
        data = c.planning_snapshot()
    if as_yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
