"""Following a job to its end: its log as it grows, attempt by attempt, with its state."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import typer

from aifactory.cli.output import print_json
from aifactory.cli.render import console
from aifactory.domain.jobs import TERMINAL, JobState

if TYPE_CHECKING:
    from rich.live import Live

    from aifactory.client import Client
    from aifactory.services.job_views import JobView, LogChunk


def follow_job(c: Client, job_id: int, stream: str = "stdout") -> JobView:
    """Stream every attempt's log and show the job's state live until it is final.

    A retried job goes from its end state back to ``pending`` with the next attempt number in
    the same transaction as the failure, so an end state read from the API is final; following
    stops once the job is in one and the current attempt's log has been read to its end.
    """
    from rich.live import Live

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


def follow_json(c: Client, job_id: int, stream: str = "stdout") -> None:
    """`aif logs --follow --json`: each chunk of each attempt's log (the API's JSON) on a line
    of its own until the job is final; exit status 1 unless it completed."""
    attempt, offset = 1, 0
    while True:
        job = c.get_job(job_id)
        chunk = log_chunk(c, job_id, offset, stream, attempt)
        if chunk.text:
            print_json(chunk, lines=True)
        offset = chunk.next_offset
        if attempt < job.attempt and not chunk.text:  # a retry began; the earlier log is read
            attempt, offset = attempt + 1, 0
        elif job.state in TERMINAL and chunk.finished:
            break
        elif not chunk.text:
            time.sleep(0.3)
    if job.state != JobState.COMPLETED:
        raise typer.Exit(1)


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
