"""Writing results: metrics JSON, per-job and time-series CSV, and PNG plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from aifactory.sim.engine import SimResult
from aifactory.sim.metrics import binned_series, job_arrays

__all__ = ["plot_compare", "wait_times", "write_outputs"]

JOB_COLUMNS = ("id", "site", "submit", "start", "end", "run", "req", "width")


def _write_jobs_csv(result: SimResult, path: Path) -> None:
    names = [s.spec.name for s in result.sites]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow((*JOB_COLUMNS, "wait"))
        for j in result.jobs:
            site = names[j.site] if j.site >= 0 else ""
            wait = j.start - j.submit if j.start >= 0 else ""
            writer.writerow((j.id, site, j.submit, j.start, j.end, j.run, j.req, j.width, wait))


def _write_series_csv(result: SimResult, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("site", "time", "busy_units", "queue_length"))
        for site in result.sites:
            for row in zip(site.times, site.busy, site.queued, strict=True):
                writer.writerow((site.spec.name, *row))


def _plot_series(result: SimResult, metrics: dict[str, Any], out: Path) -> list[Path]:
    t0 = metrics["overall"]["first_submit_s"]
    t1 = metrics["overall"]["last_end_s"]
    paths = []
    for key, label, fname in (
        ("utilization", "utilization (busy fraction)", "utilization.png"),
        ("queue", "queued jobs", "queue_length.png"),
    ):
        fig, ax = plt.subplots(figsize=(9, 4))
        for site in result.sites:
            series = binned_series(site, t0, t1)
            days = (series["edges"][:-1] - t0) / 86400.0
            ax.step(days, series[key], where="post", label=site.spec.name, linewidth=1)
        ax.set_xlabel("days since first submission")
        ax.set_ylabel(label)
        if len(result.sites) > 1:
            ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=100)
        plt.close(fig)
        paths.append(out / fname)
    return paths


def _cdf_axes(ax: Any, waits: dict[str, np.ndarray[Any, Any]]) -> None:
    for label, wait in waits.items():
        xs = np.sort(np.maximum(wait, 1))
        ys = np.arange(1, xs.size + 1) / max(xs.size, 1)
        ax.plot(xs, ys, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("wait time (s, waits under 1 s drawn at 1 s)")
    ax.set_ylabel("fraction of jobs")
    ax.grid(True, alpha=0.3)


def _plot_wait_cdf(result: SimResult, out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    _cdf_axes(ax, {"all jobs": wait_times(result)})
    fig.tight_layout()
    fig.savefig(out / "wait_cdf.png", dpi=100)
    plt.close(fig)
    return out / "wait_cdf.png"


def write_outputs(result: SimResult, metrics: dict[str, Any], out: Path) -> list[Path]:
    """Write metrics.json, jobs.csv, timeseries.csv and the three PNG plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    _write_jobs_csv(result, out / "jobs.csv")
    _write_series_csv(result, out / "timeseries.csv")
    paths = [out / "metrics.json", out / "jobs.csv", out / "timeseries.csv"]
    paths += _plot_series(result, metrics, out)
    paths.append(_plot_wait_cdf(result, out))
    return paths


def wait_times(result: SimResult) -> np.ndarray[Any, Any]:
    """Wait of every placed job (start - submit)."""
    a = job_arrays(result)
    return a["start"] - a["submit"]


def plot_compare(waits: dict[str, np.ndarray[Any, Any]], path: Path) -> Path:
    """One PNG comparing policies: the CDF of wait time, one line per policy."""
    fig, ax = plt.subplots(figsize=(7, 4))
    _cdf_axes(ax, waits)
    ax.legend()
    ax.set_title("Wait time by scheduling policy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
