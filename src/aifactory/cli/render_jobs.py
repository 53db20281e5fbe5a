"""Rich tables for jobs: the job list, one job's history and attempts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from aifactory.services.job_views import JobView


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


def job_detail(job: JobView) -> list[Table]:
    """`aif jobs show`: the job's row, its state history and its attempts."""
    history = Table(title="History", header_style="bold")
    for col in ("When", "From", "To", "Reason"):
        history.add_column(col)
    for t in job.transitions:
        history.add_row(
            t.at.isoformat(timespec="seconds"), t.from_state or "-", t.to_state, t.reason
        )
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
    return [jobs_table([job]), history, attempts]
