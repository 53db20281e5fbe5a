"""Planning outputs: the report JSON and two PNG plots (wait CDF and utilisation per factory,
before and after), drawn with matplotlib as :mod:`aifactory.sim.output` draws a run's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from aifactory.sim.output import _cdf_axes

__all__ = ["plot_utilisation", "plot_waits", "write_plan_outputs"]


def plot_waits(
    waits: dict[str, np.ndarray[Any, Any]], path: Path, title: str = "Wait time"
) -> Path:
    """CDF of wait time, one line per label (before / after, all / Playground-sized)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    _cdf_axes(ax, waits)
    ax.legend(fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_utilisation(report: dict[str, Any], path: Path) -> Path:
    """Bars of utilisation per factory, before and after."""
    before, after = report["before"]["factories"], report["after"]["factories"]
    names = list(dict.fromkeys([*before, *after]))
    xs = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for offset, label, run in ((-0.2, "before", before), (0.2, "after", after)):
        values = [100 * run[n]["utilisation"] if n in run else 0.0 for n in names]
        ax.bar(xs + offset, values, width=0.4, label=label)
    ax.set_xticks(xs, names, rotation=30, ha="right", fontsize="small")
    ax.set_ylabel("utilisation (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize="small")
    ax.set_title("Utilisation per factory")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_plan_outputs(
    report: dict[str, Any],
    waits: dict[str, np.ndarray[Any, Any]],
    out: Path,
) -> list[Path]:
    """``plan.json``, ``wait_cdf.png`` and ``utilisation.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return [
        out / "plan.json",
        plot_waits(waits, out / "wait_cdf.png", "Wait time, before and after"),
        plot_utilisation(report, out / "utilisation.png"),
    ]
