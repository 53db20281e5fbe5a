"""`aif jobs metrics JOB`: the ``step=N loss=X`` series a job printed, as a table or JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from aifactory.cli.common import client, friendly
from aifactory.cli.output import JsonOpt, emit

if TYPE_CHECKING:
    from aifactory.services.job_metrics_views import JobMetrics

#: Rows shown without --json: the newest steps (--json has every point).
SHOWN = 20


def metrics_table(metrics: JobMetrics, last: int = SHOWN) -> Table | str:
    """One row per step (the newest ``last``), one column per key."""
    if not metrics.series:
        return f"Job {metrics.job_id} printed no lines like 'step=120 loss=2.314' yet."
    values = {s.key: dict(zip(s.steps, s.values, strict=True)) for s in metrics.series}
    steps = sorted({step for s in metrics.series for step in s.steps})
    shown = steps[-last:]
    table = Table(title=f"Job {metrics.job_id}, attempt {metrics.attempt}")
    if len(shown) < len(steps):
        table.caption = f"last {len(shown)} of {len(steps)} steps (--last N)"
    table.add_column("step", justify="right")
    for s in metrics.series:
        table.add_column(s.key, justify="right")
    for step in shown:
        row = [values[s.key].get(step) for s in metrics.series]
        table.add_row(str(step), *("" if v is None else f"{v:.6g}" for v in row))
    return table


def jobs_metrics(
    job_id: int,
    last: Annotated[int, typer.Option(min=1, max=100_000, help="steps shown (the newest)")] = SHOWN,
    as_json: JsonOpt = False,
) -> None:
    """A job's training metrics by step, from its step=N key=value output lines."""
    with client() as c:
        metrics = c.job_metrics(job_id)
    emit(metrics, as_json, metrics_table(metrics, last))


def install(jobs_app: typer.Typer) -> None:
    jobs_app.command("metrics")(friendly(jobs_metrics))
